"""Every shipped example config is valid for its schema (a typo in an example would fail a user first)."""

from pathlib import Path

import pytest
import yaml

from biofm.datasets import DATASETS, is_reference
from biofm.pretrain import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "examples/configs").glob("*.yaml")), ids=lambda p: p.name)
def test_pretrain_examples_validate(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # example paths are relative to the repository root
    cfg = load_config(path, [])
    assert cfg.modality in ("dna", "cells", "text")
    for f in getattr(cfg.data, "fasta", []) + getattr(cfg.data, "h5ad", []):
        assert Path(f).exists() or (is_reference(f) and f[len("dataset:"):] in DATASETS), f


@pytest.mark.parametrize("path", sorted((ROOT / "examples/accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_examples_parse(path):
    data = yaml.safe_load(path.read_text())
    assert data["distributed_type"] in ("MULTI_GPU", "FSDP")
    assert data["num_processes"] >= 2
