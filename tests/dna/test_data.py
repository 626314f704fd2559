import numpy as np
import pytest

import biofm.dna.data as dnadata
from biofm.dna.config import DnaDataConfig
from biofm.dna.tokenizer import KmerTokenizer


def _fasta(path, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for r in range(2):
            seq = "".join(rng.choice(list("ACGT"), size=5000))
            seq = seq[:1000] + "N" * 300 + seq[1300:]
            fh.write(f">r{r}\n{seq}\n")


def _cfg(tmp_path, **kw):
    return DnaDataConfig(fasta=[str(tmp_path / "g.fa")], cache_dir=str(tmp_path / "cache"), region_bp=1000,
                         val_fraction=0.2, **kw)


def test_blocks_are_cls_plus_kmers_padded(tmp_path):
    _fasta(tmp_path / "g.fa")
    tok = KmerTokenizer(3)
    b = dnadata.build_blocks(_cfg(tmp_path), tok, block=33, seed=0)
    train = b.train[np.arange(len(b.train))]
    assert train.shape[1] == 33 and (train[:, 0] == tok.cls_id).all()
    assert b.meta["train"]["skipped_n"] + b.meta["val"]["skipped_n"] > 0  # N runs skipped at max_n_fraction 0.1
    full = train[(train != tok.pad_id).all(1)]
    assert len(full) > 0 and (tok.token_bases[full[:, 1:]].sum(1) == 96).all()  # 32 3-mers = 96 bp windows
    assert b.counts.sum() == (train != tok.pad_id).sum()


def test_rerun_hits_the_cache_and_changed_settings_miss_it(tmp_path, monkeypatch):
    _fasta(tmp_path / "g.fa")
    tok = KmerTokenizer(2)
    first = dnadata.build_blocks(_cfg(tmp_path), tok, block=32, seed=0)

    def boom(*a, **k):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(dnadata, "encode_windows", boom)
    again = dnadata.build_blocks(_cfg(tmp_path), tok, block=32, seed=0)
    assert again.path == first.path
    assert (again.train[np.arange(5)] == first.train[np.arange(5)]).all()
    with pytest.raises(AssertionError, match="tokenised again"):
        dnadata.build_blocks(_cfg(tmp_path, stride_bp=10), tok, block=32, seed=0)
    with pytest.raises(AssertionError, match="tokenised again"):
        dnadata.build_blocks(_cfg(tmp_path), KmerTokenizer(3), block=32, seed=0)


def test_no_window_shared_between_train_and_validation(tmp_path):
    _fasta(tmp_path / "g.fa")
    tok = KmerTokenizer(1)
    b = dnadata.build_blocks(_cfg(tmp_path, stride_bp=7), tok, block=65, seed=0)
    train = {tok.decode(r) for r in b.train[np.arange(len(b.train))]}
    val = {tok.decode(r) for r in b.val[np.arange(len(b.val))]}
    assert train and val and not (train & val)


def test_input_file_is_not_modified(tmp_path):
    _fasta(tmp_path / "g.fa")
    before = (tmp_path / "g.fa").read_bytes()
    dnadata.build_blocks(_cfg(tmp_path), KmerTokenizer(6), block=64, seed=0)
    assert (tmp_path / "g.fa").read_bytes() == before
