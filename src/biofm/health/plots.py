"""Loss curves with the baselines drawn in: a curve without them cannot be read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biofm.io.atomic import atomic_path


def plot_loss(rows: list[dict[str, Any]], summary: dict[str, Any], dest: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss (80/10/10 masking)", color="tab:blue", alpha=0.8)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss (all selected masked)", color="tab:red")
    if "baseline_unigram" in summary:
        ax.axhline(summary["baseline_unigram"], ls="--", color="black", label="unigram baseline")
    if "baseline_uniform" in summary:
        ax.axhline(summary["baseline_uniform"], ls=":", color="gray", label="uniform baseline log(V)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(Path(dest)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
