"""DNA demo settings: a tiny model on the E. coli genome, NT's protocol on two shipped tasks.

The genome and the tasks' tables are registered datasets (`ecoli-k12`, `uci-splice`,
`dnabert-promoter-sample`), fetched with their checksums or taken from the mirror.

Context in DNA is thin at this scale: with 6-mer tokens a small model needs far more steps than a
CPU demo has before it beats the unigram baseline, while single-nucleotide tokens learn within
minutes. The demo therefore uses k=1 (the tokenizer default stays k=6, as Nucleotide Transformer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pretrain_settings(out: Path) -> dict[str, Any]:
    return {
        "name": out.name,
        "run_dir": str(out),
        "seed": 0,
        "data": {"fasta": ["dataset:ecoli-k12"], "split": "region", "val_fraction": 0.05, "region_bp": 50_000},
        "tokenizer": {"k": 1},
        "model": {"preset": "tiny", "block_tokens": 256},
        "train": {
            "steps": 300, "global_batch_tokens": 8192, "micro_batch_size": 32, "lr": 2e-3,
            "schedule": "cosine", "warmup_steps": 30, "min_lr_ratio": 0.1, "log_every": 10,
            "eval_every": 50, "eval_max_blocks": 256, "checkpoint_every": 100, "keep_checkpoints": 1,
        },
    }


def eval_settings(run_dir: Path) -> dict[str, Any]:
    """Every method on both shipped tasks, sized for the demo's time budget (fewer folds and epochs;
    the defaults of `biofm evaluate` stay NT's 10 folds)."""
    return {
        "model": str(run_dir / "model"),
        "tasks": ["splice", "promoter"],
        "out": str(run_dir / "eval"),
        "folds": 3,
        "probes": {"mlp_hidden": [64]},
        "finetune": {"epochs": 2, "patience": 1, "max_train_examples": 600, "batch_size": 64},
        "baselines": {"xgboost": {"n_estimators": 60, "max_depth": 3},
                      "cnn": {"epochs": 4, "patience": 2, "channels": 32, "n_dilated": 3}},
    }
