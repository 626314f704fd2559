"""`biofm demo`: the whole lifecycle on shipped data, sized for a 2-core laptop CPU.

Context in DNA is thin at this scale: with 6-mer tokens a small model needs far more steps than a
CPU demo has before it beats the unigram baseline, while single-nucleotide tokens learn within
minutes. The demo therefore uses k=1 (the tokenizer default stays k=6, as Nucleotide Transformer).
"""

from __future__ import annotations

import json
from pathlib import Path

from biofm import config as cfgmod
from biofm.eval.evaluate import EvaluateConfig
from biofm.pretrain import PretrainConfig, finish_run, run

DATA = Path(__file__).parent / "demo_data"
GENOME = DATA / "ecoli_K12_MG1655_NC_000913.3.fna.gz"


def demo_config(out: Path, overrides: list[str] | None = None) -> PretrainConfig:
    data = {
        "name": out.name,
        "run_dir": str(out),
        "seed": 0,
        "data": {"fasta": [str(GENOME)], "split": "region", "val_fraction": 0.05, "region_bp": 50_000},
        "tokenizer": {"k": 1},
        "model": {"preset": "tiny", "block_tokens": 256},
        "train": {
            "steps": 300, "global_batch_tokens": 8192, "micro_batch_size": 32, "lr": 2e-3,
            "schedule": "cosine", "warmup_steps": 30, "min_lr_ratio": 0.1, "log_every": 10,
            "eval_every": 50, "eval_max_blocks": 256, "checkpoint_every": 100, "keep_checkpoints": 1,
        },
    }
    data = cfgmod.apply_overrides(data, overrides or [])
    return cfgmod.build(PretrainConfig, data, "demo config")


def demo_eval_config(run_dir: Path, overrides: list[str] | None = None) -> EvaluateConfig:
    """Every method on both shipped tasks, sized for the demo's time budget (fewer folds and epochs;
    the defaults of `biofm evaluate` stay NT's 10 folds)."""
    data = {
        "model": str(run_dir / "model"),
        "tasks": ["splice", "promoter"],
        "out": str(run_dir / "eval"),
        "folds": 3,
        "probes": {"mlp_hidden": [64]},
        "finetune": {"epochs": 2, "patience": 1, "max_train_examples": 600, "batch_size": 64},
        "baselines": {"xgboost": {"n_estimators": 60, "max_depth": 3},
                      "cnn": {"epochs": 4, "patience": 2, "channels": 32, "n_dilated": 3}},
    }
    data = cfgmod.apply_overrides(data, overrides or [])
    return cfgmod.build(EvaluateConfig, data, "demo evaluation config")


def run_demo(out: Path, overrides: list[str] | None = None, eval_overrides: list[str] | None = None,
             evaluate: bool = True) -> Path:
    from biofm.eval.evaluate import run_evaluation
    from biofm.eval.report import verdict_table_html

    out = Path(out)
    run_dir = run(demo_config(out, overrides), overwrite=True)
    if evaluate:
        eval_dir = run_evaluation(demo_eval_config(run_dir, eval_overrides))
        results = json.loads((eval_dir / "results.json").read_text())
        finish_run(run_dir, sections=[("Evaluation against baselines (NT protocol)", verdict_table_html(results))])
        print_verdicts(results)
    return run_dir


def print_verdicts(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for t in results["tasks"]:
        metric = t["headline_metric"]
        table = Table(title=f"{t['task']}: {metric} over {t['folds']} folds")
        for col in ("method", "kind", f"{metric} mean ± s.d."):
            table.add_column(col)
        for m in sorted(t["methods"], key=lambda m: -(m["summary"][metric]["mean"] or -1)):
            s = m["summary"][metric]
            table.add_row(m["name"], m["kind"], f"{s['mean']:.3f} ± {s['std']:.3f}")
        console.print(table)
        if t.get("verdict"):
            console.print(t["verdict"]["sentence"])
    console.print(f"overall: the model {results['overall']} tasks")
