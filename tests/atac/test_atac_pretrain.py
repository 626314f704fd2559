"""ATAC pretraining end to end on a synthetic peak matrix: the config's rules, a run that beats the per-peak
baseline, contrastive against chance, the doctor's verdict, one-line refusals, the throughput bench."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from biofm.cli import main as _main
from biofm.errors import BiofmError
from biofm.health.doctor import LEARNING, NOT_BELOW, diagnose
from biofm.pretraining import build_config_for

ROOT = Path(__file__).resolve().parents[2]


def main(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _main(args)
    assert exit_.value.code in (0, None)


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's one-line error (exit code 2)."""
    with pytest.raises(SystemExit) as exit_:
        _main(args)
    assert exit_.value.code == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def write_peaks(path: Path, n: int = 120, seed: int = 0, X: np.ndarray | None = None) -> Path:
    """Two cell types, each with its own open peaks (so a cell's other peaks predict a hidden one), over
    three chromosomes, stored out of genome order."""
    rng = np.random.default_rng(seed)
    n_peaks = 90
    chrom = np.array(["chr1"] * 40 + ["chr2"] * 30 + ["chrX"] * 20)
    start = np.concatenate([np.arange(40), np.arange(30), np.arange(20)]) * 20_000 + 1000
    if X is None:
        kind = rng.integers(0, 2, n)
        p = np.full((n, n_peaks), 0.03)
        p[kind == 0, :30] = 0.6
        p[kind == 1, 30:60] = 0.6
        X = (rng.random((n, n_peaks)) < p) * rng.integers(1, 3, (n, n_peaks))
        X[np.arange(n), 60 + np.arange(n) % 30] = 1  # every cell has an accessible peak
    order = rng.permutation(n_peaks)
    names = [f"{c}_{s}_{s + 500}" for c, s in zip(chrom[order], start[order], strict=True)]
    obs = pd.DataFrame({"cell_type": np.where(X[:, :30].sum(1) > X[:, 30:60].sum(1), "A", "B"),
                        "batch": np.repeat(["d1", "d2"], [n // 2, n - n // 2])}, index=[f"c{i}" for i in range(n)])
    ad.AnnData(sp.csr_matrix(np.asarray(X)[:, order].astype(np.float32)), obs=obs,
               var=pd.DataFrame(index=names)).write_h5ad(path)
    return path


def config(tmp: Path, h5ad: Path, name: str, **overrides) -> Path:
    data = {"name": name, "run_dir": str(tmp / name), "modality": "atac", "seed": 0,
            "data": {"h5ad": [str(h5ad)], "val_fraction": 0.2},
            "tokenizer": {"max_peaks": 32}, "model": {"preset": "tiny"},
            "train": {"steps": 60, "global_batch_tokens": 16 * 33, "micro_batch_size": 16, "lr": 3e-3,
                      "warmup_steps": 5, "eval_every": 30, "log_every": 10, "checkpoint_every": 60,
                      "mask_prob": 0.3, "threads": 2}}
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return tmp / f"{name}.yaml"


@pytest.fixture(scope="module")
def peak_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("atac")
    h5ad = write_peaks(tmp / "peaks.h5ad")
    main(["pretrain", str(config(tmp, h5ad, "pt", objectives={"masked_peak": 1.0}))])
    return tmp / "pt"


def test_peak_token_run_beats_each_peaks_own_rate(peak_run: Path):
    summary = json.loads((peak_run / "summary.json").read_text())
    assert summary["baseline_reference"] == "per_peak" and summary["objective"]["main"] == "masked_peak"
    assert summary["baseline_uniform"] == pytest.approx(math.log(2))
    assert summary["baseline_per_peak"] < summary["baseline_global"]  # peaks differ in their own rates
    # the other peaks of a cell say its type, and its type which peaks are open
    assert summary["final_eval_loss"] < summary["baseline_per_peak"] - 3 * summary["eval_gain_se"]
    assert summary["health"]["verdict"] == LEARNING
    data = json.loads((peak_run / "data.json").read_text())
    assert data["cells"] == {"train": 96, "val": 24} and data["binarisation"] == "count > 0"


def test_doctor_reads_the_run(peak_run: Path):
    main(["doctor", str(peak_run)])


def test_baseline_rates_come_from_training_cells_only(tmp_path: Path):
    """A peak open only in held-out cells gets the floor rate (no count), as one never seen."""
    from biofm.atac.pretrain import _split, prepare
    from biofm.models.presets import get_preset

    n = 40
    train, val = _split(n, 0.2, 0)
    X = np.zeros((n, 90), dtype=np.int64)
    X[:, 89] = 1
    X[val, 0] = 1  # peak chr1_1000_1500: open in every validation cell, in no training cell
    X[val, 1] = 1
    X[train, 1] = 1  # open everywhere
    h5ad = write_peaks(tmp_path / "p.h5ad", n=n, X=X)
    cfg = build_config_for(yaml.safe_load(config(tmp_path, h5ad, "b", objectives={"masked_patch": 1.0},
                                                 design="patch_cnn").read_text()), "cfg")
    obj = prepare(cfg, get_preset("tiny"), 512).objective
    g = 2 * len(train) / (len(train) * 90)  # the global rate over the training cells
    rate = lambda count: (count + g) / (len(train) + 1)  # noqa: E731
    logit = obj.stat_per_peak_logit.numpy()
    assert 1 / (1 + math.exp(-logit[0])) == pytest.approx(rate(0), rel=1e-4)
    assert 1 / (1 + math.exp(-logit[1])) == pytest.approx(rate(len(train)), rel=1e-4)


def test_contrastive_alone_is_scored_against_chance(tmp_path: Path):
    h5ad = write_peaks(tmp_path / "peaks.h5ad")
    main(["pretrain", str(config(tmp_path, h5ad, "pc", design="patch_cnn", objectives={"contrastive": 1.0},
                                 patches={"conv_strides": [5, 2], "conv_channels": 8},
                                 train={"steps": 20, "eval_every": 10, "checkpoint_every": 20,
                                        "global_batch_tokens": 8 * 10}))])
    summary = json.loads((tmp_path / "pc" / "summary.json").read_text())
    # 24 held-out cells: evaluation batches of 2 x 8 cells (32 views) and 8 cells (16 views)
    chance = (32 * math.log(31) + 16 * math.log(15)) / 48
    assert summary["baseline_reference"] == "chance" and summary["loss_unit"] == "nats per view"
    assert summary["baseline_chance"] == pytest.approx(chance)
    # view retrieval at each honest evaluation, in metrics.jsonl and the summary, against chance 1/(2B-1)
    rows = [json.loads(x) for x in (tmp_path / "pc" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "metrics" in r] == [10, 20]
    acc = summary["metrics"]["retrieval_accuracy"]
    assert acc["items"] == 48 and acc["chance"] == pytest.approx((32 / 31 + 16 / 15) / 48)
    assert 0 <= acc["value"] <= 1 and "components" not in summary  # contrastive is the main one here
    from transformers import AutoModel

    assert AutoModel.from_pretrained(tmp_path / "pc" / "model").config.model_type == "bert"


def test_doctor_calls_a_contrastive_loss_at_chance_not_learning():
    chance = math.log(63)
    rows = [{"step": s, "loss": chance, "eval_loss": chance + 1e-7, "baseline_reference": "chance",
             "baseline_chance": chance} for s in (100, 200, 300)]
    summary = {"baseline_reference": "chance", "baseline_chance": chance, "eval_gain_se": 1e-7,
               "loss_unit": "nats per view"}
    assert diagnose(summary, rows).verdict == NOT_BELOW
    rows[-1]["eval_loss"] = chance - 0.5
    assert diagnose(summary, rows).verdict == LEARNING


def test_config_rules():
    base = {"modality": "atac", "data": {"h5ad": ["x.h5ad"]}}
    assert build_config_for(base, "c").objectives.masked_peak == 1.0  # the design's masked objective
    assert build_config_for({**base, "design": "patch_cnn"}, "c").objectives.weights() == {
        "masked_peak": 0.0, "masked_patch": 1.0, "contrastive": 0.0}
    with pytest.raises(BiofmError, match=r"objectives\.masked_patch belongs to design patch_cnn"):
        build_config_for({**base, "objectives": {"masked_patch": 1.0}}, "c")
    with pytest.raises(BiofmError, match="weight > 0"):
        build_config_for({**base, "objectives": {"masked_peak": 0.0}}, "c")


def test_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    h5ad = write_peaks(tmp_path / "peaks.h5ad")
    line = refused(["pretrain", str(config(tmp_path, h5ad, "x", objectives={"masked_patch": 1.0}))], capsys)
    assert "masked_patch" in line
    frac = tmp_path / "frac.h5ad"
    a = ad.read_h5ad(h5ad)
    a.X = a.X * 0.5
    a.write_h5ad(frac)
    line = refused(["pretrain", str(config(tmp_path, frac, "y"))], capsys)
    assert str(frac) in line and "non-integer" in line
    empty = tmp_path / "empty.h5ad"
    a = ad.read_h5ad(h5ad)
    X = a.X.toarray()
    X[3] = 0
    a.X = sp.csr_matrix(X)
    a.write_h5ad(empty)
    line = refused(["pretrain", str(config(tmp_path, empty, "z"))], capsys)
    assert "'c3'" in line and "no accessible peak" in line


def test_bench_runs_and_reports_json():
    proc = subprocess.run([sys.executable, str(ROOT / "bench/atac.py"), "--smoke", "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["atac_ratio"] > 0 and out["rounds"] >= 1
    assert out["biofm_tokens_per_batch"] < out["dense_tokens_per_batch"]


def test_continued_pretraining_keeps_the_peaks_and_heads(peak_run: Path, tmp_path: Path):
    from safetensors.torch import load_file

    h5ad = write_peaks(tmp_path / "more.h5ad", seed=1)
    main(["pretrain", str(config(tmp_path, h5ad, "more", objectives={"masked_peak": 1.0},
                                 model={"init_from": str(peak_run)},
                                 train={"steps": 2, "eval_every": 2, "checkpoint_every": 2, "lr": 1e-9,
                                        "warmup_steps": 0}))])
    before = load_file(str(peak_run / "model" / "biofm_atac_heads.safetensors"))
    after = load_file(str(tmp_path / "more" / "model" / "biofm_atac_heads.safetensors"))
    assert set(after) == set(before)
    for k in before:  # two steps at lr 1e-9: the heads are those the run ended with, not fresh ones
        np.testing.assert_allclose(after[k].numpy(), before[k].numpy(), atol=1e-5)
    from biofm.atac.tokenize import PeakVocab

    old, new = PeakVocab.load(peak_run / "model"), PeakVocab.load(tmp_path / "more" / "model")
    assert new.names.tolist() == old.names.tolist() and new.settings == old.settings
