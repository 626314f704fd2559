"""Every shipped example config is valid for its schema (a typo in an example would fail a user first)."""

from pathlib import Path

import pytest
import yaml

from biofm.config import build, read_yaml
from biofm.datasets import DATASETS, is_reference
from biofm.eval.evaluate import EvaluateConfig
from biofm.modality import names
from biofm.pretraining import load_config
from biofm.sweep import SweepConfig, point_config, point_name, points

ROOT = Path(__file__).resolve().parents[1]


PRETRAIN = sorted(p for p in (ROOT / "examples/configs").glob("*.yaml") if not p.name.startswith("sweep_"))
SWEEPS = sorted((ROOT / "examples/configs").glob("sweep_*.yaml"))


@pytest.mark.parametrize("path", PRETRAIN, ids=lambda p: p.name)
def test_pretrain_examples_validate(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # example paths are relative to the repository root
    cfg = load_config(path, [])
    assert cfg.modality in names()
    h5ad = getattr(cfg.data, "h5ad", None) or []
    files = [*(getattr(cfg.data, "fasta", None) or []), *(h5ad.values() if isinstance(h5ad, dict) else h5ad)]
    files += [getattr(cfg.data, "h5mu", None)] if getattr(cfg.data, "h5mu", None) else []
    assert files, path  # every example names its data
    for f in files:
        assert Path(f).exists() or (is_reference(f) and f[len("dataset:"):] in DATASETS), f


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_examples_validate_every_point(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = build(SweepConfig, read_yaml(path), str(path))
    named = [(point_name(i, v), v) for i, v in enumerate(points(cfg.grid))]
    assert len(named) >= 2
    for name, values in named:  # every point's pretraining config is valid (as `biofm sweep` checks first)
        assert point_config(cfg, name, values).resolved_run_dir().name == name
    if cfg.evaluate is not None:
        assert build(EvaluateConfig, {**cfg.evaluate, "model": "m", "out": "o"}, str(path)).tasks


@pytest.mark.parametrize("path", sorted((ROOT / "examples/accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_examples_parse(path):
    data = yaml.safe_load(path.read_text())
    assert data["distributed_type"] in ("MULTI_GPU", "FSDP")
    assert data["num_processes"] >= 2
