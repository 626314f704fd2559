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
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue", alpha=0.8)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="honest eval loss (all targets hidden)", color="tab:red")
    styles = iter([("--", "black"), ("-.", "tab:green"), (":", "tab:purple"), ("--", "tab:orange")])
    for key, value in summary.items():
        if not key.startswith("baseline_") or key == "baseline_reference" or "_bits_per_" in key:
            continue
        name = key[len("baseline_"):]
        if name == "uniform":
            ax.axhline(value, ls=":", color="gray", label="uniform baseline log(V)")
        else:
            ls, color = next(styles, ("--", "black"))
            ax.axhline(value, ls=ls, color=color, label=f"{name.replace('_', ' ')} baseline")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(summary.get("loss_unit", "cross-entropy (nats per token)"))
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(Path(dest)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
