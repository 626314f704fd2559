"""Nucleotide Transformer's rule for comparing a model with a baseline.

The model *matches* the best baseline when their mean ± 2 s.d. intervals (over folds) overlap, *beats*
it when its interval lies entirely above, and *loses* when it lies entirely below.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Verdict:
    task: str
    outcome: str  # beats / matches / loses
    model_method: str
    model_mean: float
    model_std: float
    baseline_method: str
    baseline_mean: float
    baseline_std: float
    metric: str

    def sentence(self) -> str:
        m = f"{self.model_method} ({self.metric} {self.model_mean:.3f} ± {self.model_std:.3f})"
        b = f"{self.baseline_method} ({self.baseline_mean:.3f} ± {self.baseline_std:.3f})"
        how = {"beats": "beats", "matches": "matches", "loses": "loses to"}[self.outcome]
        return f"{self.task}: the model's best, {m}, {how} the best baseline, {b}."


def compare(mean: float, std: float, base_mean: float, base_std: float) -> str:
    lo, hi = mean - 2 * std, mean + 2 * std
    blo, bhi = base_mean - 2 * base_std, base_mean + 2 * base_std
    if lo > bhi:
        return "beats"
    if hi < blo:
        return "loses"
    return "matches"


def task_verdict(task: str, methods: list[dict], metric: str) -> Verdict | None:
    """Best model method (probe/finetune) against the best baseline, by mean of `metric`."""
    def best(kind_ok):
        cands = [m for m in methods if kind_ok(m["kind"]) and metric in m["summary"]]
        cands = [m for m in cands if m["summary"][metric]["mean"] == m["summary"][metric]["mean"]]  # not NaN
        return max(cands, key=lambda m: m["summary"][metric]["mean"]) if cands else None

    model = best(lambda k: k in ("probe", "finetune"))
    base = best(lambda k: k == "baseline")
    if model is None or base is None:
        return None
    ms, bs = model["summary"][metric], base["summary"][metric]
    return Verdict(task, compare(ms["mean"], ms["std"], bs["mean"], bs["std"]), model["name"], ms["mean"],
                   ms["std"], base["name"], bs["mean"], bs["std"], metric)


def count_sentence(outcomes: list[str]) -> str:
    n = {k: sum(o == k for o in outcomes) for k in ("beats", "matches", "loses")}
    return f"beats {n['beats']}, matches {n['matches']}, loses {n['loses']} of {len(outcomes)}"
