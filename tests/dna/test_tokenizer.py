"""KmerTokenizer: NT's tokenisation rule, vocabulary layout, and parity with its Hugging Face export."""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biofm.dna.tokenizer import KmerTokenizer
from biofm.errors import BiofmError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

KS = (1, 2, 3, 6)
SPECIALS = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>"]


@functools.cache
def tok_for(k: int) -> KmerTokenizer:
    """One tokenizer per k for the property tests (building the k=8 vocabulary takes ~25 ms)."""
    return KmerTokenizer(k)


def reference(tok: KmerTokenizer, seq: str) -> list[int]:
    """The rule as NT states it, written the obvious (slow) way: an oracle for the vectorised code."""
    return [tok.vocab[piece] for piece in re.findall(f"[ACGT]{{{tok.k}}}|[ACGTN]", seq)]


def _seqs(max_size: int = 80) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet="ACGT", max_size=max_size),
        st.text(alphabet="ACGTN", max_size=max_size),
        st.text(alphabet="ACGTNNNNNN", max_size=max_size),  # N-rich
        st.text(alphabet="AN", max_size=max_size),
        st.integers(0, 20).flatmap(lambda n: st.text(alphabet="ACGTN", min_size=n, max_size=n)),
    )


SEQS = _seqs()


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("kmer_tok")
    return {k: KmerTokenizer(k).save(root / f"k{k}") for k in KS}


@pytest.fixture(scope="module")
def hf_loaded(hf_folders: dict[int, Path]) -> dict[int, object]:
    from transformers import AutoTokenizer

    return {k: AutoTokenizer.from_pretrained(str(path)) for k, path in hf_folders.items()}


# ----------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize("k", [1, 2, 3, 6, 8])
def test_vocab_layout(k: int) -> None:
    tok = KmerTokenizer(k)
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    expected = SPECIALS + kmers + (["N"] if k == 1 else list("ACGTN"))
    assert tok.tokens == expected
    assert tok.vocab == {t: i for i, t in enumerate(expected)}
    assert tok.vocab_size == len(tok) == len(expected)
    assert (tok.unk_id, tok.pad_id, tok.mask_id, tok.cls_id, tok.eos_id) == (0, 1, 2, 3, 4)
    assert tok.special_ids == (0, 1, 2, 3, 4)
    assert tok.vocab["T" * k] == 5 + 4**k - 1
    assert tok.token_bases.tolist() == [0] * 5 + [k] * 4**k + [1] * (len(expected) - 5 - 4**k)


@pytest.mark.parametrize("bad", [0, 9, -1, "6", 2.0, True])
def test_bad_k(bad: object) -> None:
    with pytest.raises(BiofmError, match="k-mer size"):
        KmerTokenizer(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(
    ("k", "seq", "pieces"),
    [
        (6, "ACGTACGTA", ["ACGTAC", "G", "T", "A"]),
        (6, "ACGNACGTACGT", ["A", "C", "G", "N", "ACGTAC", "G", "T"]),
        (6, "NNACGTACN", ["N", "N", "ACGTAC", "N"]),
        (6, "ACGTA", ["A", "C", "G", "T", "A"]),
        (6, "ACGTACGTACGT", ["ACGTAC", "GTACGT"]),
        (6, "", []),
        (1, "ACGTN", ["A", "C", "G", "T", "N"]),
        (2, "ACGTA", ["AC", "GT", "A"]),
        (2, "ANCGT", ["A", "N", "CG", "T"]),
        (3, "ACGTNACGTAC", ["ACG", "T", "N", "ACG", "TAC"]),
        (3, "NNN", ["N", "N", "N"]),
    ],
)
def test_explicit_examples(k: int, seq: str, pieces: list[str]) -> None:
    tok = KmerTokenizer(k)
    ids = tok.encode(seq)
    assert ids.dtype == np.int32
    assert tok.convert_ids_to_tokens(ids) == pieces
    assert ids.tolist() == [tok.vocab[p] for p in pieces]
    assert tok.decode(ids) == seq


@pytest.mark.parametrize("k", (*KS, 5, 8))
@settings(max_examples=150, deadline=None)
@given(seq=SEQS)
def test_encode_matches_rule_and_round_trips(k: int, seq: str) -> None:
    tok = tok_for(k)
    ids = tok.encode(seq)
    assert ids.tolist() == reference(tok, seq)
    assert tok.decode(ids) == seq
    assert int(tok.token_bases[ids].sum()) == len(seq)


@pytest.mark.parametrize("k", [1, 3, 6])
@settings(max_examples=100, deadline=None)
@given(seqs=st.lists(SEQS, max_size=12))
def test_encode_batch_equals_encode(k: int, seqs: list[str]) -> None:
    tok = tok_for(k)
    batch = tok.encode_batch(seqs)
    assert len(batch) == len(seqs)
    for seq, ids in zip(seqs, batch, strict=True):
        assert ids.tolist() == tok.encode(seq).tolist()


def test_long_sequences_cross_internal_blocks() -> None:
    """Runs, N's and sequence boundaries falling across the cache-sized processing blocks."""
    rng = np.random.default_rng(0)
    arr = np.frombuffer(b"ACGTN", dtype=np.uint8)[rng.choice(5, 700_000, p=[0.24] * 4 + [0.04])]
    seq = arr.tobytes().decode()
    tok = KmerTokenizer(6)
    assert tok.encode(seq).tolist() == reference(tok, seq)
    clean = seq.replace("N", "")
    assert tok.encode(clean).tolist() == reference(tok, clean)
    pieces = [seq[i : i + 6001] for i in range(0, len(seq), 6001)] * 3  # > one 1 Mbp group
    assert [ids.tolist() for ids in tok.encode_batch(pieces)] == [reference(tok, p) for p in pieces]


@pytest.mark.parametrize(
    ("seq", "shown"),
    [("ACGTX", "'X' at position 4"), ("acgt", "'a' at position 0"), ("ACGé", "'é' at position 3")],
)
def test_bad_character(seq: str, shown: str) -> None:
    with pytest.raises(BiofmError, match=shown):
        KmerTokenizer(3).encode(seq)


def test_bad_character_in_batch_names_sequence() -> None:
    with pytest.raises(BiofmError, match="'U' at sequence 2, position 1"):
        KmerTokenizer(3).encode_batch(["ACGT", "", "AUG"])


def test_decode_specials() -> None:
    tok = KmerTokenizer(2)
    ids = [tok.cls_id, *tok.encode("ACGTA").tolist(), tok.mask_id, tok.eos_id, tok.pad_id]
    assert tok.decode(ids) == "ACGTA"
    assert tok.decode(np.array(ids), skip_special_tokens=False) == "<cls>ACGTA<mask><eos><pad>"
    with pytest.raises(BiofmError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


# ----------------------------------------------------------------------------- Hugging Face export
@pytest.mark.parametrize("k", KS)
@settings(max_examples=120, deadline=None)
@given(seq=SEQS)
def test_hf_ids_and_round_trip(hf_loaded: dict[int, object], k: int, seq: str) -> None:
    hf = hf_loaded[k]
    tok = tok_for(k)
    ids = hf(seq, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    assert ids == tok.encode(seq).tolist()
    assert hf.decode(ids) == seq  # type: ignore[attr-defined]
    with_specials = hf(seq)["input_ids"]  # type: ignore[operator]
    assert with_specials == [tok.cls_id, *ids]
    assert hf.decode(with_specials, skip_special_tokens=True) == seq  # type: ignore[attr-defined]


def test_hf_special_tokens_and_config(hf_loaded: dict[int, object], hf_folders: dict[int, Path]) -> None:
    hf = hf_loaded[6]
    tok = KmerTokenizer(6)
    assert hf.vocab_size == len(hf) == tok.vocab_size  # type: ignore[attr-defined,arg-type]
    assert (hf.unk_token, hf.pad_token, hf.mask_token, hf.cls_token, hf.eos_token, hf.bos_token) == (  # type: ignore[attr-defined]
        "<unk>",
        "<pad>",
        "<mask>",
        "<cls>",
        "<eos>",
        "<cls>",
    )
    assert (hf.unk_token_id, hf.pad_token_id, hf.mask_token_id, hf.cls_token_id, hf.eos_token_id) == (  # type: ignore[attr-defined]
        0,
        1,
        2,
        3,
        4,
    )
    assert hf.model_max_length == 2048  # type: ignore[attr-defined]
    assert hf.decode([3, *tok.encode("ACGTACGTA").tolist()]) == "<cls>ACGTACGTA"  # type: ignore[attr-defined]
    cfg = json.loads((hf_folders[6] / "tokenizer_config.json").read_text())
    assert cfg["biofm_kmer_k"] == 6
    assert "auto_map" not in cfg  # nothing for trust_remote_code to run


def test_hf_normalizer_is_a_convenience_only(hf_loaded: dict[int, object]) -> None:
    hf = hf_loaded[3]
    tok = KmerTokenizer(3)
    assert hf("acgunACGU", add_special_tokens=False)["input_ids"] == tok.encode("ACGTNACGT").tolist()  # type: ignore[operator]
    assert hf("ACGXA", add_special_tokens=False)["input_ids"][-2] == tok.unk_id  # type: ignore[operator]


def test_hf_padding_and_max_length(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    path = KmerTokenizer(2, model_max_length=7).save(tmp_path / "tok")
    hf = AutoTokenizer.from_pretrained(str(path))
    assert hf.model_max_length == 7
    out = hf(["ACGTAC", "A"], padding=True)["input_ids"]
    assert out == [[3, 6, 16, 6], [3, 21, 1, 1]]  # <cls> AC GT AC; <cls> A <pad> <pad>


def test_hf_folder_loads_without_biofm(hf_folders: dict[int, Path]) -> None:
    """The saved folder is plain `transformers`: a fresh interpreter never imports biofm."""
    seq = "ACGNACGTACGTNNACG"
    code = (
        "import sys, json\n"
        "from transformers import AutoTokenizer\n"
        f"t = AutoTokenizer.from_pretrained({str(hf_folders[6])!r})\n"
        f"ids = t({seq!r}, add_special_tokens=False)['input_ids']\n"
        "print(json.dumps([ids, t.decode(ids), any(m.startswith('biofm') for m in sys.modules)]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd="/"
    )
    ids, decoded, biofm_imported = json.loads(res.stdout.strip().splitlines()[-1])
    assert ids == KmerTokenizer(6).encode(seq).tolist()
    assert decoded == seq
    assert not biofm_imported


# ----------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("k", KS)
def test_save_load(hf_folders: dict[int, Path], k: int) -> None:
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in hf_folders[k].iterdir()}
    tok = KmerTokenizer.load(hf_folders[k])
    assert tok.k == k
    assert tok.vocab == KmerTokenizer(k).vocab
    assert tok.model_max_length == 2048


def test_save_overwrites_and_leaves_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "tok"
    KmerTokenizer(3).save(dest)
    assert oct(dest.stat().st_mode & 0o777) == oct(0o755)
    KmerTokenizer(4, model_max_length=100).save(dest)
    loaded = KmerTokenizer.load(dest)
    assert (loaded.k, loaded.model_max_length) == (4, 100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]
    assert sorted(p.name for p in dest.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]


def test_save_into_model_folder_keeps_its_files(tmp_path: Path) -> None:
    """Saving beside a model's weights (as `save_pretrained` does) must not wipe them."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    KmerTokenizer(2).save(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert KmerTokenizer.load(model_dir).k == 2


def test_load_rejects_other_folders(tmp_path: Path) -> None:
    with pytest.raises(BiofmError, match="not a biofm k-mer tokenizer folder"):
        KmerTokenizer.load(tmp_path / "missing")
    folder = KmerTokenizer(2).save(tmp_path / "tok")
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())

    del cfg["biofm_kmer_k"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(BiofmError, match="biofm_kmer_k"):
        KmerTokenizer.load(folder)

    cfg["biofm_kmer_k"] = 3  # claims k=3 but holds the k=2 vocabulary
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(BiofmError, match="vocabulary does not match"):
        KmerTokenizer.load(folder)

    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(BiofmError, match=str(folder)):
        KmerTokenizer.load(folder)
