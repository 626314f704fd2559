"""DNA demo settings: a tiny model on the E. coli genome, NT's protocol on four shipped tasks.

The genome and the tasks' tables are registered datasets (`ecoli-k12`, `ecoli-elements`,
`ecoli-cds-strand`, `uci-splice`, `dnabert-promoter-sample`), fetched with their checksums or taken
from the mirror.

What pretraining is for, shown in minutes: the first two tasks come from the annotation of the
genome the model is trained on (100 bp windows upstream of genes / in CDS / intergenic, and a CDS
window on its coding strand or reversed), and the evaluation sets the model's best method against
the best method of its random-weights twin, paired over the tasks' 5 genome-block folds. Measured
with `biofm sweep examples/configs/sweep_dna_demo.yaml` (tokens k=1 or 3 x 300 or 900 steps): k=3
(non-overlapping 3-mers) at 300 steps is the cheapest setting whose gain over the twin is clear on
both tasks (paired 95% intervals above 0); single nucleotides learn the masked-LM objective as soon
but their gain on the element task stays within noise, and 6-mers need far more steps than a CPU
demo has before they beat the unigram baseline. Splice sites and promoters (human, from other
genomes) stay as out-of-genome checks, reported whichever way they go.
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
        "tokenizer": {"k": 3},
        "model": {"preset": "tiny", "block_tokens": 256},
        "train": {
            "steps": 300, "global_batch_tokens": 8192, "micro_batch_size": 32, "lr": 2e-3,
            "schedule": "cosine", "warmup_steps": 30, "min_lr_ratio": 0.1, "log_every": 10,
            "eval_every": 50, "eval_max_blocks": 256, "checkpoint_every": 100, "keep_checkpoints": 1,
        },
    }


def eval_settings(run_dir: Path) -> dict[str, Any]:
    """Every method on the four tasks, sized for the demo's time budget (fewer folds and epochs; the
    defaults of `biofm evaluate` stay NT's 10 folds; the E. coli tasks bring their own 5 folds)."""
    return {
        "model": str(run_dir / "model"),
        "tasks": ["ecoli-elements", "ecoli-cds-strand", "splice", "promoter"],
        "out": str(run_dir / "eval"),
        "folds": 3,
        "probes": {"mlp_hidden": [64]},
        "finetune": {"epochs": 2, "patience": 1, "max_train_examples": 600, "batch_size": 64},
        "baselines": {"xgboost": {"n_estimators": 60, "max_depth": 3},
                      "cnn": {"epochs": 4, "patience": 2, "channels": 32, "n_dilated": 3}},
    }
