"""The random-weights control: did pretraining add anything?

A model that beats the baselines may owe it to its architecture and tokenizer alone: a random
network's embeddings are already a rich random feature map, and fine-tuning can train one from
scratch. The control is the same architecture, configuration and tokenizer with freshly initialised
weights (`seed`), run through exactly the same methods on the same folds. The pretraining gain of a
method is model − control, judged like the baselines (biofm.eval.verdict): NT's ±2 s.d. rule, and the
paired comparison (over the shared folds, or over the test rows of a fixed split), which
decides the headline outcome when the two disagree. Under a fixed split the folds are seeds: model and
control run with the same seed k on the same test set, and the rows say "seeds".
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from biofm.eval.verdict import compare, compare_methods
from biofm.io.atomic import atomic_path

PREFIX = "control-"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# other frameworks' copies of the pretrained weights (a Hub snapshot may hold several GB of them): never copied
_OTHER_WEIGHTS = (".bin", ".h5", ".msgpack", ".ckpt", ".pt", ".pth", ".onnx", ".gguf", ".tflite", ".ot")


def make_control_model(model_dir: Path, dest: Path, seed: int) -> Path:
    """A model folder beside the evaluation: `model_dir`'s files (config, tokenizer, modality files) with
    freshly initialised weights in place of the pretrained ones."""
    from transformers import AutoConfig

    from biofm.models.presets import build_model

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    fresh = build_model(config, seed=seed)
    with atomic_path(dest, is_dir=True) as tmp:
        for f in sorted(model_dir.iterdir()):
            if (f.is_file() and f.name not in _WEIGHT_FILES and not f.name.startswith("model-")
                    and not f.name.endswith(_OTHER_WEIGHTS) and not f.name.endswith(".index.json")):
                if f.suffix == ".safetensors":  # a modality's extra module (heads, a patch CNN): fresh too
                    _fresh_tensors(f, tmp / f.name, seed)
                else:
                    shutil.copy2(f, tmp / f.name)
        fresh.save_pretrained(tmp)
    return dest


def _fresh_tensors(src: Path, dest: Path, seed: int) -> None:
    """The same tensors (names, shapes, dtypes) at PyTorch's default initialisation for their shape:
    weights of linear / convolution layers uniform in ±1/sqrt(fan_in) (kaiming-uniform with a = sqrt(5)),
    normalisation scales 1, biases and other vectors 0. Nothing of the pretrained values is kept."""
    import math

    import torch
    from safetensors.torch import load_file, save_file

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in sorted(load_file(str(src)).items()):
        if t.ndim >= 2:
            bound = 1.0 / math.sqrt(max(1, int(np.prod(t.shape[1:]))))
            new = (torch.rand(t.shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound
        elif t.ndim == 1 and any(k in name.lower() for k in ("norm", "ln", "bn")) and name.endswith("weight"):
            new = torch.ones(t.shape)
        else:
            new = torch.zeros(t.shape)
        out[name] = new.to(t.dtype).contiguous()
    save_file(out, str(dest))


def _gain_row(m: dict[str, Any], twin: dict[str, Any], metric: str, name: str, unit: str,
              labels: np.ndarray | None) -> dict[str, Any]:
    words = {"beats": "gain", "matches": "no gain", "loses": "worse"}
    ms, cs = m["summary"][metric], twin["summary"][metric]
    nt = words[compare(ms["mean"], ms["std"], cs["mean"], cs["std"])]
    pair = compare_methods(m, twin, metric, labels, unit)
    row = {"method": name, "metric": metric, "model_mean": ms["mean"], "model_std": ms["std"],
           "control_mean": cs["mean"], "control_std": cs["std"], "gain": ms["mean"] - cs["mean"],
           "outcome": words[pair.outcome] if pair else nt, "nt_outcome": nt}
    if pair is not None:
        row.update({"paired_gain_mean": pair.mean, "paired_gain_std": pair.std, "paired_ci_low": pair.ci_low,
                    "paired_ci_high": pair.ci_high, "p_value": pair.p_value, "p_test": pair.test,
                    "paired_over": pair.unit, "paired_n": pair.n, "seeds": pair.seeds or None})
    return row


def pretraining_gain(methods: list[dict[str, Any]], metric: str, unit: str = "folds",
                     labels: np.ndarray | None = None) -> list[dict[str, Any]]:
    """model − control for every model method with a control twin, then one row `best` that sets the
    model's best method against the control's best method (whichever they are: a pretrained model must
    beat the best a random network achieves with any readout, not only its own twin). Each row has the
    outcome (gain / no gain / worse: paired when there are ≥ 2 folds, else NT's), NT's outcome, and the
    paired difference (over folds; under a fixed split, `unit` = "seeds", over the test rows)."""
    by_name = {m["name"]: m for m in methods}
    rows, pairs = [], []
    for m in methods:
        twin = by_name.get(PREFIX + m["name"])
        if m["kind"] not in ("probe", "finetune") or twin is None or metric not in m["summary"]:
            continue
        rows.append(_gain_row(m, twin, metric, m["name"], unit, labels))
        pairs.append((m, twin))
    if pairs:
        def mean(m: dict[str, Any]) -> float:
            v = m["summary"][metric]["mean"]
            return v if v == v else -np.inf

        best_model = max((m for m, _ in pairs), key=mean)
        best_control = max((t for _, t in pairs), key=mean)
        rows.append(_gain_row(best_model, best_control, metric,
                              f"best: {best_model['name']} vs {best_control['name']}", unit, labels))
    return rows


def gain_sentence(task: str, rows: list[dict[str, Any]]) -> str:
    """One line: the model's best method against the random-weights control's best method."""
    if not rows:
        return f"{task}: no random-weights control was run"
    best = next((r for r in rows if r["method"].startswith("best: ")), rows[-1])
    model_method, _, control_method = best["method"].removeprefix("best: ").partition(" vs ")
    how = {"gain": "gains over", "no gain": "only matches", "worse": "is worse than"}
    s = (f"{task}: pretraining {best['outcome']}: the model's best, {model_method} ({best['metric']} "
         f"{best['model_mean']:.3f} ± {best['model_std']:.3f}), {how[best['outcome']]} the random-weights "
         f"control's best, {control_method or model_method} ({best['control_mean']:.3f} ± {best['control_std']:.3f})")
    if "paired_ci_low" in best:
        p = best["p_value"]
        over = f"{best['paired_n']} {best['paired_over']}" + (f" x {best['seeds']} seeds" if best["seeds"] else "")
        s += (f"; paired gain {best['paired_gain_mean']:+.3f} (95% CI {best['paired_ci_low']:+.3f} to "
              f"{best['paired_ci_high']:+.3f}, {over}, {best['p_test']} p="
              f"{'n/a' if p != p else format(p, '.3g')})")
        if best["nt_outcome"] != best["outcome"]:
            s += f"; NT's ±2 s.d. rule would say {best['nt_outcome']}"
    return s
