"""DNA inputs that used to be taken silently or explained badly: window/stride 0, a data file given as the
config, and identical sequences on both sides of the train/validation split."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np
import pytest

import biofm.dna.data as dnadata
from biofm.cli import main
from biofm.config import build, read_yaml
from biofm.dna.config import DnaDataConfig
from biofm.dna.fasta import read_fasta
from biofm.dna.tokenizer import KmerTokenizer
from biofm.dna.windows import iter_windows, split_segments
from biofm.errors import BiofmError
from biofm.pretraining import load_config

# --- window_bp / stride_bp: 0 is not "the default" ------------------------------------------------


def _pretrain_yaml(tmp_path: Path, data_extra: str = "") -> Path:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"name: t\ndata:\n  fasta: [{tmp_path / 'g.fa'}]\n{data_extra}")
    return cfg


@pytest.mark.parametrize("key", ["window_bp", "stride_bp"])
@pytest.mark.parametrize("value", [0, -5])
def test_zero_or_negative_window_settings_are_refused_naming_file_and_key(tmp_path, key, value):
    cfg = _pretrain_yaml(tmp_path, f"  {key}: {value}\n")
    with pytest.raises(BiofmError) as err:
        load_config(cfg, [])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{cfg}: key 'data.{key}'")
    assert "positive number of bases" in msg and "omit the key" in msg and "null" in msg
    assert f"(got {value})" in msg


@pytest.mark.parametrize("key", ["window_bp", "stride_bp"])
def test_zero_from_the_command_line_is_refused_too(tmp_path, key):
    with pytest.raises(BiofmError, match=rf"key 'data\.{key}'.*omit the key"):
        load_config(_pretrain_yaml(tmp_path), [f"data.{key}=0"])


def test_omitted_or_null_window_settings_mean_the_default(tmp_path):
    assert load_config(_pretrain_yaml(tmp_path), []).data.window_bp is None
    cfg = load_config(_pretrain_yaml(tmp_path, "  window_bp: null\n  stride_bp: 30\n"), [])
    assert cfg.data.window_bp is None and cfg.data.stride_bp == 30
    data = build(DnaDataConfig, {"fasta": ["g.fa"], "window_bp": 90}, "x")
    assert dnadata.window_bp(data, KmerTokenizer(3), 33) == 90
    assert dnadata.window_bp(data.model_copy(update={"window_bp": None}), KmerTokenizer(3), 33) == 96


# --- a data file where the YAML config belongs ----------------------------------------------------

FASTA_HINT = "put it under data.fasta in a config (see examples/configs/dna_tiny.yaml)"
H5AD_HINT = "put it under data.h5ad in a config (see examples/configs/cells_recommended.yaml)"


def _hdf5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f["X"] = np.zeros((2, 2))
    return path


CASES = {
    # name -> (writer, what the message says it is, hint)
    "genome.fa": (lambda p: p.write_text(">chr1\nACGT\n"), "this is a FASTA file, not a YAML config", FASTA_HINT),
    "genome.fna": (lambda p: p.write_text(""), "this is a FASTA file, not a YAML config", FASTA_HINT),  # by name
    "genome.yaml": (lambda p: p.write_text("\n\n  \n>chr1 some text\nACGT\n"), "this is a FASTA file", FASTA_HINT),
    "genome.fa.gz": (lambda p: p.write_bytes(gzip.compress(b">chr1\nACGT\n")),
                     "this is a gzip-compressed FASTA file, not a YAML config", FASTA_HINT),
    "noname": (lambda p: p.write_bytes(gzip.compress(b">chr1\nACGT\n")),  # by content, inside the gzip
               "this is a gzip-compressed FASTA file", FASTA_HINT),
    "cfg.yaml.gz": (lambda p: p.write_bytes(gzip.compress(b"name: t\n")),
                    "this is a gzip-compressed file, not a YAML config",
                    "give the path of a YAML config instead"),
    "cells.h5ad": (_hdf5, "this is an AnnData .h5ad file, not a YAML config", H5AD_HINT),
    "cells.dat": (_hdf5, "this is an HDF5 file", H5AD_HINT),  # by the HDF5 magic alone
}


@pytest.mark.parametrize("name", list(CASES))
def test_data_file_given_as_config_says_what_it_is(tmp_path, name):
    write, what, hint = CASES[name]
    path = tmp_path / name
    write(path)
    with pytest.raises(BiofmError) as err:
        read_yaml(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {what}")
    assert msg.endswith(hint)


def test_fasta_as_the_pretrain_config_is_one_line_on_the_command_line(tmp_path, capsys):
    fa = tmp_path / "genome.fa"
    fa.write_text(">chr1\nACGTACGT\n")
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", str(fa)])
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert exc.value.code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "genome.fa: this is a FASTA file, not a YAML config; put it under data.fasta" in lines[0]


def test_real_yaml_configs_still_read(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("# a comment starting with > is fine\nname: t\nnote: '>not fasta'\n")
    assert read_yaml(p) == {"name": "t", "note": ">not fasta"}


# --- identical sequences on both sides of the split -----------------------------------------------

WINDOW = 60
K = 3
BLOCK = WINDOW // K + 1  # one window without N fills one block exactly


def _random(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=n))


def _rows(view) -> set[tuple[int, ...]]:
    return {tuple(r) for r in view[np.arange(len(view))].tolist()}


def _build(tmp_path: Path, split: str, pack: bool = False, cache: str = "cache", **kw):
    cfg = DnaDataConfig(fasta=[str(tmp_path / "g.fa")], cache_dir=str(tmp_path / cache), split=split,
                        window_bp=WINDOW, pack=pack, **kw)
    return dnadata.build_blocks(cfg, KmerTokenizer(K), block=BLOCK, seed=0)


def _expected_duplicates(tmp_path: Path, split: str, val_fraction: float, region_bp: int) -> tuple[int, int]:
    """(val windows identical to a training window, val windows), from the in-memory reference split."""
    train, val = split_segments(read_fasta(tmp_path / "g.fa"), split, val_fraction, region_bp, 0)
    train_seqs = {w.seq for w in iter_windows(train, WINDOW, WINDOW, 0.1)}
    val_windows = list(iter_windows(val, WINDOW, WINDOW, 0.1))
    return sum(w.seq in train_seqs for w in val_windows), len(val_windows)


def _check_no_shared_blocks(b, expected: int, n_val: int) -> None:
    train, val = _rows(b.train), _rows(b.val)
    assert train and val
    assert not (train & val)  # no validation block is also a training block
    assert b.meta["val_duplicates_removed"] == expected
    assert b.meta["val"]["kept"] == n_val - expected == len(b.val)  # one window a block (pack: false)
    assert json_meta(b)["val_duplicates_removed"] == expected


def json_meta(b) -> dict:
    import json

    return json.loads((b.path / "meta.json").read_text())


def test_a_record_given_twice_is_not_in_validation_and_training_with_split_record(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    unique = [_random(rng, 600) for _ in range(10)]
    with open(tmp_path / "g.fa", "w") as fh:
        for i, seq in enumerate(unique):
            fh.write(f">r{i}\n{seq}\n")
        for i, seq in enumerate(unique):  # the same sequences again, under other names
            fh.write(f">copy{i}\n{seq}\n")
    expected, n_val = _expected_duplicates(tmp_path, "record", 0.25, 100_000)
    assert expected > 0 and n_val > expected  # without the removal, these would be shared
    monkeypatch.delenv("BIOFM_QUIET", raising=False)
    b = _build(tmp_path, "record", val_fraction=0.25)
    _check_no_shared_blocks(b, expected, n_val)
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and note.startswith("note: ")
    assert f"dropped {expected} validation window(s)" in note and "g.fa" in note
    again = _build(tmp_path, "record", val_fraction=0.25)  # from the cache: still said
    assert again.path == b.path and f"dropped {expected} validation" in capsys.readouterr().err


def test_a_repeated_region_is_not_in_validation_and_training_with_split_region(tmp_path):
    rng = np.random.default_rng(1)
    region = 300  # a multiple of the window, so windows line up with the regions
    chunks = [_random(rng, region) for _ in range(8)]
    order = [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]  # every chunk at least twice
    extra = [_random(rng, region) for _ in range(10)]  # and unique regions
    seq = "".join(chunks[i] for i in order) + "".join(extra)
    (tmp_path / "g.fa").write_text(f">chr1\n{seq}\n")
    expected, n_val = _expected_duplicates(tmp_path, "region", 0.2, region)
    assert expected > 0 and n_val > expected
    b = _build(tmp_path, "region", val_fraction=0.2, region_bp=region)
    _check_no_shared_blocks(b, expected, n_val)
    packed = _build(tmp_path, "region", pack=True, cache="packed", val_fraction=0.2, region_bp=region)
    assert packed.meta["val_duplicates_removed"] == expected  # removed as windows, before packing
    assert packed.meta["val"]["blocks"] == n_val - expected


def test_training_keeps_its_copies_and_no_duplicate_means_nothing_removed(tmp_path):
    rng = np.random.default_rng(2)
    with open(tmp_path / "g.fa", "w") as fh:
        for i in range(8):
            fh.write(f">r{i}\n{_random(rng, 600)}\n")
    b = _build(tmp_path, "record", val_fraction=0.25)
    assert b.meta["val_duplicates_removed"] == 0
    _, n_val = _expected_duplicates(tmp_path, "record", 0.25, 100_000)
    assert len(b.val) == n_val


def test_validation_made_only_of_copies_is_a_one_line_error(tmp_path):
    rng = np.random.default_rng(3)
    seq = _random(rng, 600)
    (tmp_path / "g.fa").write_text(f">a\n{seq}\n>b\n{seq}\n")
    with pytest.raises(BiofmError) as err:
        _build(tmp_path, "record", val_fraction=0.5)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "g.fa"))
    assert "all 10 validation windows are identical to training windows" in msg
