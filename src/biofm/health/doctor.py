"""The training-health verdict: did the model learn anything about context?

A masked-token loss means nothing on its own. The verdict compares the honest eval loss (every
target hidden from the input) with the strongest context-free baseline the objective offers on the
same targets (the unigram for tokens; each gene's own value distribution for cells), using the paired
per-target difference and its standard error, and looks at the curve for divergence and plateaus.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biofm.errors import BiofmError
from biofm.io.metrics import read_metrics

LEARNING = "learning"
NOT_BELOW = "not below the context-free baseline"
DIVERGING = "diverging"
PLATEAUED = "plateaued"


@dataclass
class Diagnosis:
    verdict: str
    facts: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict == LEARNING

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "facts": self.facts, "advice": self.advice}


def load_run(run: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run = Path(run)
    if not run.is_dir():
        raise BiofmError(f"{run}: no such run folder")
    summary_path, metrics_path = run / "summary.json", run / "metrics.jsonl"
    if not metrics_path.exists():
        raise BiofmError(f"{run}: no metrics.jsonl; is this a biofm run folder?")
    rows = read_metrics(metrics_path)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return summary, rows


def _baseline(summary: dict[str, Any], evals: list[dict[str, Any]], name: str) -> float:
    key = f"baseline_{name}"
    if key in summary:
        return float(summary[key])
    return float(evals[-1][key]) if evals and key in evals[-1] else float("nan")


def part_facts(components: dict[str, dict[str, Any]], metrics: dict[str, dict[str, Any]]) -> list[str]:
    """One line per further objective, each on its own held-out targets against its own context-free
    baseline (the verdict is about the main one), and one per rate against its chance level."""
    out = []
    for name, c in components.items():
        below = c["gain"] > max(3 * c["gain_se"], 1e-3 * abs(c["baseline"]))
        out.append(f"objective {name}: {c['loss']:.4f} against its baseline {c['baseline']:.4f}: "
                   f"{'below' if below else 'NOT below'} it by {c['gain']:+.4f} (s.e. {c['gain_se']:.4f}, "
                   f"{c['targets']:,} targets)")
    for name, m in metrics.items():
        chance = f" against chance {m['chance']:.4f}" if m.get("chance") is not None else ""
        out.append(f"{name.replace('_', ' ')} {m['value']:.4f}{chance} ({m['items']:,} items)")
    return out


def diagnose(summary: dict[str, Any], rows: list[dict[str, Any]]) -> Diagnosis:
    # the training curve of the component the verdict is about: with several objectives `loss` is their
    # weighted sum, on another scale than the main one's eval loss and its baselines
    main = (summary.get("objective") or {}).get("main")
    losses = [r.get(f"loss_{main}", r["loss"]) for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    ref = summary.get("baseline_reference") or (evals[-1].get("baseline_reference") if evals else None) or "unigram"
    uniform = _baseline(summary, evals, "uniform")
    reference = _baseline(summary, evals, ref)
    others = sorted({k[9:] for k in (evals[-1] if evals else summary) if k.startswith("baseline_")}
                    - {"reference", "uniform", ref})
    others = [o for o in others if "_bits_per_" not in o]
    facts: list[str] = []
    if summary.get("status") == "diverged" or any(not math.isfinite(x) for x in losses):
        return Diagnosis(DIVERGING, [summary.get("error", "the training loss became NaN or Inf")], [
            "lower the peak learning rate (train.lr) by 3-10x",
            "lengthen the warmup (train.warmup_steps)",
            "keep gradient clipping on (train.grad_clip=1.0) and try train.precision=fp32",
        ])
    if not evals:
        return Diagnosis(NOT_BELOW, ["the run has no evaluation yet"], ["let it run to its first evaluation"])
    unit = summary.get("loss_unit", "nats per token")
    final = evals[-1]["eval_loss"]
    best = min(r["eval_loss"] for r in evals)
    se = summary.get("eval_gain_se", evals[-1].get("eval_gain_se", 0.0)) or 0.0
    gain = reference - final
    facts.append(f"honest eval loss {final:.4f} {unit} (every target hidden from the input) at step "
                 f"{evals[-1]['step']}")
    line = f"{ref} baseline {reference:.4f} (the context-free reference)"
    if math.isfinite(uniform):
        line += f", uniform baseline log(V) {uniform:.4f}"
    for o in others:
        line += f", {o.replace('_', ' ')} baseline {_baseline(summary, evals, o):.4f}"
    facts.append(line)
    facts.append(f"gain over the {ref} baseline {gain:+.4f} (standard error {se:.4f})")
    facts += part_facts(summary.get("components") or evals[-1].get("components") or {},
                        summary.get("metrics") or evals[-1].get("metrics") or {})
    if not math.isfinite(uniform):
        uniform = max(reference, best) * 4 + 1.0  # regression losses have no log(V): only the curve tests apply
    tail = losses[len(losses) // 2:] if losses else []
    if final > best + max(0.05, 0.25 * abs(reference - best)) or (tail and min(tail) > uniform + 0.5):
        return Diagnosis(DIVERGING, [*facts, f"the eval loss rose from its best {best:.4f} to {final:.4f}"], [
            "lower the peak learning rate (train.lr)", "lengthen the warmup (train.warmup_steps)",
            "check gradient clipping (train.grad_clip) and the grad_norm column of metrics.jsonl",
        ])
    if not gain > max(3 * se, 1e-3 * abs(reference)):
        advice = [
            f"a loss at or above the {ref} baseline means the model predicts frequencies, not context",
            "check the masking: targets must be the original tokens (values) at the selected positions",
            "use a warmup (train.warmup_steps) and a lower peak learning rate if the loss spiked early",
            "train longer (train.steps) or on more tokens",
        ]
        advice[1:1] = (summary.get("objective") or {}).get("advice", [])
        if final > uniform:
            advice.insert(0, "the loss is even above log(V): this points to a bug in the objective or targets")
        return Diagnosis(NOT_BELOW, facts, advice)
    if len(evals) >= 4:
        cut = len(evals) - max(1, len(evals) // 3)
        before = min(r["eval_loss"] for r in evals[:cut])
        after = min(r["eval_loss"] for r in evals[cut:])
        if before - after < 5e-4 * abs(final):
            return Diagnosis(PLATEAUED, [*facts, f"no improvement over the last {len(evals) - cut} evaluations"], [
                "raise the learning rate or use a schedule that decays less (train.schedule)",
                "a larger model (model.preset) or more data",
                "stop here if the gain is what you need",
            ])
    return Diagnosis(LEARNING, facts, [])
