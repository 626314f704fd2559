"""Comparing two methods scored on the same folds: Nucleotide Transformer's rule and a paired test.

NT's rule (what the field reports): one method *beats* another when its mean ± 2 s.d. interval over
folds lies entirely above the other's, *loses* when it lies entirely below, and *matches* otherwise.

Every method is scored on the same folds, so much of the fold-to-fold spread is shared (a hard fold is
hard for everyone) and the ±2 s.d. intervals overlap even when one method is better on every fold. The
paired comparison looks at the per-fold differences instead: their mean with a 95% t-interval, and a
two-sided Wilcoxon signed-rank p-value. The paired outcome is *beats* / *loses* when the interval
excludes 0, *matches* otherwise. The headline outcome is the paired one (when there are at least 2
folds); a sentence says so when NT's rule would call it otherwise.

Under a fixed split (a benchmark's own test set) every method is scored on the one test set once per
seed. Seed-to-seed differences say nothing about how the comparison would move with another test set
(a deterministic method has no spread at all, and two of them differ by the same amount on every
seed), so there the comparison is a paired bootstrap over the test rows: rows are resampled with
replacement (1,000 times), both methods are scored on the same resample with each seed's predictions,
and the 95% interval and two-sided p-value come from the resampled differences of the seed-averaged
scores.
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
    """The differences a − b of two methods scored on the same folds (or the same test rows)."""

    n: int
    mean: float
    std: float
    ci_low: float  # 95% interval of the mean difference (t-interval over folds, or bootstrap percentiles)
    ci_high: float
    p_value: float  # two-sided (NaN when every difference is 0)
    outcome: str  # beats / matches / loses: the interval above 0, across it, below it
    unit: str = "folds"  # what was paired: cross-validation folds, or "test rows" of a fixed split
    test: str = "Wilcoxon"  # the p-value's test: Wilcoxon signed-rank, or the paired bootstrap
    seeds: int = 0  # fixed split: the seeds whose scores were averaged

    def text(self) -> str:
        p = "n/a" if math.isnan(self.p_value) else f"{self.p_value:.3g}"
        over = f"{self.n} {self.unit}" + (f" x {self.seeds} seeds" if self.seeds else "")
        return (f"paired difference {self.mean:+.3f} (95% CI {self.ci_low:+.3f} to {self.ci_high:+.3f}, "
                f"{over}, {self.test} p={p})")


def paired(a: list[float] | np.ndarray, b: list[float] | np.ndarray, unit: str = "folds") -> Paired | None:
    """Paired comparison of per-fold scores `a` and `b` (same folds, same order); None below 2 folds or
    when a score is NaN (a metric undefined on some fold)."""
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


def _mcc(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Matthews correlation for any number of classes (Gorodkin's form, as scikit-learn's)."""
    c = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    t, p, s = c.sum(1).astype(float), c.sum(0).astype(float), float(len(y))
    den = math.sqrt((s * s - p @ p) * (s * s - t @ t))
    return 0.0 if den == 0 else float((np.trace(c) * s - p @ t) / den)


def _pearson(y: np.ndarray, pred: np.ndarray) -> float:
    if np.std(y) == 0 or np.std(pred) == 0:
        return math.nan
    return float(np.corrcoef(y, pred)[0, 1])


SCORERS = {"mcc", "pearson"}


def paired_bootstrap(a: list[Any], b: list[Any], labels: np.ndarray, metric: str, n_boot: int = 1000,
                     seed: int = 0) -> Paired | None:
    """Paired bootstrap over test rows of two methods' predictions on one fixed test set (`a`, `b`: one
    FoldPrediction per seed, every one over the same rows); None for a metric it cannot recompute."""
    if metric not in SCORERS or not a or len(a) != len(b):
        return None

    def stack(preds: list[Any]) -> np.ndarray:
        out = []
        for p in sorted(preds, key=lambda p: p.fold):
            order = np.argsort(p.test_idx, kind="stable")
            out.append(np.asarray(p.pred)[order])
        return np.stack(out)  # [seeds, n]

    rows = np.sort(np.asarray(a[0].test_idx))
    if any(not np.array_equal(np.sort(np.asarray(p.test_idx)), rows) for p in (*a, *b)):
        return None
    A, B, y = stack(a), stack(b), np.asarray(labels)[rows]
    if metric == "mcc":
        k = int(max(y.max(), A.max(), B.max())) + 1
        A, B, y = A.astype(np.int64), B.astype(np.int64), y.astype(np.int64)

        def score(yy: np.ndarray, pp: np.ndarray) -> float:
            return _mcc(yy, pp, k)
    else:
        score = _pearson

    def diff(idx: np.ndarray) -> float:
        return float(np.mean([score(y[idx], A[s, idx]) - score(y[idx], B[s, idx]) for s in range(len(A))]))

    point = diff(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    d = np.array([diff(rng.integers(0, len(y), len(y))) for _ in range(n_boot)])
    d = d[np.isfinite(d)]
    if not math.isfinite(point) or len(d) < n_boot // 2:
        return None
    lo, hi = (float(x) for x in np.percentile(d, [2.5, 97.5]))
    p = math.nan if np.all(d == 0) else float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))
    outcome = "beats" if lo > 0 else "loses" if hi < 0 else "matches"
    return Paired(len(y), point, float(d.std(ddof=1)), lo, hi, p, outcome, "test rows", "paired bootstrap", len(A))


def compare_methods(a: dict[str, Any], b: dict[str, Any], metric: str, labels: np.ndarray | None = None,
                    unit: str = "folds") -> Paired | None:
    """The paired comparison of two scored methods: over the shared folds, or (`unit` = "seeds", a fixed
    split, with the methods' `predictions` and the task's labels) a paired bootstrap over test rows."""
    if unit == "seeds" and labels is not None and "predictions" in a and "predictions" in b:
        boot = paired_bootstrap(a["predictions"], b["predictions"], labels, metric)
        if boot is not None:
            return boot
    return paired(per_fold(a, metric), per_fold(b, metric), unit)


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


def task_verdict(task: str, methods: list[dict], metric: str, unit: str = "folds",
                 labels: np.ndarray | None = None) -> Verdict | None:
    """Best model method (probe/finetune) against the best baseline, by mean of `metric`; paired over the
    shared folds, or over the test rows of a fixed split (`unit` = "seeds", see `compare_methods`)."""
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
    pair = compare_methods(model, base, metric, labels, unit)
    return Verdict(task, pair.outcome if pair else nt, nt, None if pair is None else vars(pair), model["name"],
                   ms["mean"], ms["std"], base["name"], bs["mean"], bs["std"], metric)


def count_sentence(outcomes: list[str]) -> str:
    n = {k: sum(o == k for o in outcomes) for k in OUTCOMES}
    return f"beats {n['beats']}, matches {n['matches']}, loses {n['loses']} of {len(outcomes)}"
