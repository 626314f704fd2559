"""The random-weights control: did pretraining add anything?

A model that beats the baselines may owe it to its architecture and tokenizer alone: a random
network's embeddings are already a rich random feature map, and fine-tuning can train one from
scratch. The control is the same architecture, configuration and tokenizer with freshly initialised
weights (`seed`), run through exactly the same methods on the same folds. The pretraining gain of a
method is model − control; it is judged with the same ±2 s.d. rule as the baselines, and the per-fold
paired difference is reported beside it (the folds are shared, so most of their spread cancels).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from biofm.eval.verdict import compare
from biofm.io.atomic import atomic_path

PREFIX = "control-"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def make_control_model(model_dir: Path, dest: Path, seed: int) -> Path:
    """A model folder beside the evaluation: `model_dir`'s files (config, tokenizer, modality files) with
    freshly initialised weights in place of the pretrained ones."""
    from transformers import AutoConfig

    from biofm.models.presets import build_model

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    fresh = build_model(config, seed=seed)
    with atomic_path(dest, is_dir=True) as tmp:
        for f in sorted(model_dir.iterdir()):
            if f.is_file() and f.name not in _WEIGHT_FILES and not f.name.startswith("model-"):
                shutil.copy2(f, tmp / f.name)
        fresh.save_pretrained(tmp)
    return dest


def pretraining_gain(methods: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """For every model method with a control twin: model − control, the ±2 s.d. outcome
    (gain / no gain / worse) and the mean ± s.d. of the per-fold paired difference."""
    by_name = {m["name"]: m for m in methods}
    rows = []
    for m in methods:
        twin = by_name.get(PREFIX + m["name"])
        if m["kind"] not in ("probe", "finetune") or twin is None or metric not in m["summary"]:
            continue
        ms, cs = m["summary"][metric], twin["summary"][metric]
        pairs = [(a[metric], b[metric]) for a, b in zip(m["per_fold"], twin["per_fold"], strict=True)]
        diff = np.array([a - b for a, b in pairs], dtype=float)
        outcome = {"beats": "gain", "matches": "no gain", "loses": "worse"}[
            compare(ms["mean"], ms["std"], cs["mean"], cs["std"])]
        rows.append({"method": m["name"], "metric": metric, "model_mean": ms["mean"], "model_std": ms["std"],
                     "control_mean": cs["mean"], "control_std": cs["std"], "gain": ms["mean"] - cs["mean"],
                     "paired_gain_mean": float(diff.mean()), "paired_gain_std": float(diff.std(ddof=1))
                     if len(diff) > 1 else 0.0, "outcome": outcome})
    return rows


def gain_sentence(task: str, rows: list[dict[str, Any]]) -> str:
    """One line: the best model method against its own random-weights twin."""
    if not rows:
        return f"{task}: no random-weights control was run"
    best = max(rows, key=lambda r: r["model_mean"])
    how = {"gain": "gains over", "no gain": "only matches", "worse": "is worse than"}[best["outcome"]]
    return (f"{task}: pretraining {best['outcome']}: {best['method']} ({best['metric']} {best['model_mean']:.3f} ± "
            f"{best['model_std']:.3f}) {how} its random-weights control ({best['control_mean']:.3f} ± "
            f"{best['control_std']:.3f}); paired gain {best['paired_gain_mean']:+.3f} ± {best['paired_gain_std']:.3f}")
