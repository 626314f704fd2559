"""Comparing two methods scored on the same folds: Nucleotide Transformer's rule and a paired test.

NT's rule (what the field reports): one method *beats* another when its mean ± 2 s.d. interval over
folds lies entirely above the other's, *loses* when it lies entirely below, and *matches* otherwise.

Every method is scored on the same folds, so much of the fold-to-fold spread is shared (a hard fold is
hard for everyone) and the ±2 s.d. intervals overlap even when one method is better on every fold. The
paired comparison looks at the per-fold differences instead: their mean with a 95% t-interval, and a
two-sided Wilcoxon signed-rank p-value. The paired outcome is *beats* / *loses* when the interval
excludes 0, *matches* otherwise. The headline outcome is the paired one (when there are at least 2
folds); a sentence says so when NT's rule would call it otherwise.

Under a fixed split (a benchmark's own test set) the "folds" are seeds: every method is scored on the
one test set once per seed, so the pairing is seed by seed and the sentence says "N seeds". The interval
then measures how much the comparison moves with the seed (initialisation, validation draw, batch
order), not how it would move with another test set: a deterministic method has no spread at all, and
two of them differ by the same amount on every seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

OUTCOMES = ("beats", "matches", "loses")


def compare(mean: float, std: float, base_mean: float, base_std: float) -> str:
    """NT's ±2 s.d. rule: beats / matches / loses."""
    lo, hi = mean - 2 * std, mean + 2 * std
    blo, bhi = base_mean - 2 * base_std, base_mean + 2 * base_std
    if lo > bhi:
        return "beats"
    if hi < blo:
        return "loses"
    return "matches"


@dataclass
class Paired:
    """The per-fold differences a − b of two methods scored on the same folds."""

    n: int
    mean: float
    std: float
    ci_low: float  # 95% t-interval of the mean difference
    ci_high: float
    wilcoxon_p: float  # two-sided signed-rank p-value (NaN when every difference is 0)
    outcome: str  # beats / matches / loses: the interval above 0, across it, below it
    unit: str = "folds"  # what was paired: cross-validation folds, or the seeds of a fixed split

    def text(self) -> str:
        p = "n/a" if math.isnan(self.wilcoxon_p) else f"{self.wilcoxon_p:.3g}"
        return (f"paired difference {self.mean:+.3f} (95% CI {self.ci_low:+.3f} to {self.ci_high:+.3f}, "
                f"{self.n} {self.unit}, Wilcoxon p={p})")


def paired(a: list[float] | np.ndarray, b: list[float] | np.ndarray, unit: str = "folds") -> Paired | None:
    """Paired comparison of per-fold scores `a` and `b` (same folds, same order; `unit` = "seeds" when the
    folds are the seeds of a fixed split); None below 2 folds or when a score is NaN (a metric undefined
    on some fold)."""
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2 or not np.all(np.isfinite(d)):
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(d) - 1)) * sd / math.sqrt(len(d))
    lo, hi = mean - half, mean + half
    if np.all(d == 0):
        p = float("nan")
    else:
        p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    outcome = "beats" if lo > 0 else "loses" if hi < 0 else "matches"
    return Paired(len(d), mean, sd, lo, hi, p, outcome, unit)


def per_fold(method: dict[str, Any], metric: str) -> list[float]:
    return [float(f[metric]) for f in method["per_fold"]]


@dataclass
class Verdict:
    task: str
    outcome: str  # the headline: the paired outcome when there is one, else NT's
    nt_outcome: str  # NT's ±2 s.d. rule
    paired: dict[str, Any] | None  # Paired's fields (model − best baseline), None below 2 folds
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
        how = {"beats": "beats", "matches": "matches", "loses": "loses to"}
        s = f"{self.task}: the model's best, {m}, {how[self.outcome]} the best baseline, {b}"
        if self.paired is not None:
            s += f"; {Paired(**self.paired).text()}"
            if self.nt_outcome != self.outcome:
                s += f"; NT's ±2 s.d. rule would say it {how[self.nt_outcome]} it"
        return s + "."


def task_verdict(task: str, methods: list[dict], metric: str, unit: str = "folds") -> Verdict | None:
    """Best model method (probe/finetune) against the best baseline, by mean of `metric`; paired over the
    shared folds (`unit` = "seeds": the seeds of a fixed split, every method scored on the same test set
    with the same seed k)."""
    def best(kind_ok):
        cands = [m for m in methods if kind_ok(m["kind"]) and metric in m["summary"]]
        cands = [m for m in cands if m["summary"][metric]["mean"] == m["summary"][metric]["mean"]]  # not NaN
        return max(cands, key=lambda m: m["summary"][metric]["mean"]) if cands else None

    model = best(lambda k: k in ("probe", "finetune"))
    base = best(lambda k: k == "baseline")
    if model is None or base is None:
        return None
    ms, bs = model["summary"][metric], base["summary"][metric]
    nt = compare(ms["mean"], ms["std"], bs["mean"], bs["std"])
    pair = paired(per_fold(model, metric), per_fold(base, metric), unit)
    return Verdict(task, pair.outcome if pair else nt, nt, None if pair is None else vars(pair), model["name"],
                   ms["mean"], ms["std"], base["name"], bs["mean"], bs["std"], metric)


def count_sentence(outcomes: list[str]) -> str:
    n = {k: sum(o == k for o in outcomes) for k in OUTCOMES}
    return f"beats {n['beats']}, matches {n['matches']}, loses {n['loses']} of {len(outcomes)}"
