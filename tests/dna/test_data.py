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
    monkeypatch.setattr(dnadata, "pack_windows", boom)
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


def test_packing_keeps_every_token_of_short_and_n_rich_windows_without_padding(tmp_path):
    rng = np.random.default_rng(0)
    with open(tmp_path / "g.fa", "w") as fh:
        for r in range(6):  # records of uneven length; record ends give short windows, N runs long ones
            seq = list("".join(rng.choice(list("ACGT"), int(rng.integers(150, 400)))))
            seq[20:35] = "N" * 15
            fh.write(f">r{r}\n{''.join(seq)}\n")
    tok = KmerTokenizer(3)

    def build(pack):
        cfg = DnaDataConfig(fasta=[str(tmp_path / "g.fa")], cache_dir=str(tmp_path / "c"), split="record",
                            val_fraction=0.2, window_bp=60, max_n_fraction=0.5, pack=pack)
        return dnadata.build_blocks(cfg, tok, block=16, seed=0)

    packed, padded = build(True), build(False)
    p, q = packed.train[np.arange(len(packed.train))], padded.train[np.arange(len(padded.train))]
    assert (p[:-1] != tok.pad_id).all()  # only the last block has padding
    assert (q == tok.pad_id).any()  # the short record ends are padded without packing
    # every window's tokens, in order, each after its <cls>: nothing truncated
    from biofm.dna.fasta import read_fasta
    from biofm.dna.windows import iter_windows, split_segments

    train_segments = split_segments(read_fasta(tmp_path / "g.fa"), "record", 0.2, 100_000, 0)[0]
    windows = list(iter_windows(train_segments, 60, 60, 0.5))
    expected = np.concatenate([np.concatenate([[tok.cls_id], tok.encode(w.seq)]) for w in windows])
    flat = p.ravel()
    assert (flat[: len(expected)] == expected).all() and (flat[len(expected):] == tok.pad_id).all()
    assert packed.counts.sum() == (p != tok.pad_id).sum()
