"""scATAC demo settings: a small peak-token model on 600 bone-marrow cells, cell types against LSI.

Pretraining uses the 600 Granja et al. (2019) cells' peaks without their labels (unsupervised, as
scATAC embeddings are judged on the cells they embed): peak-id tokens with genomic positions and the
masked-peak accessibility objective, judged against each peak's own accessibility rate. The evaluation
then predicts the 6 cell types from the frozen embeddings (task `granja-celltypes-600`) under 5-fold
stratified CV, beside the TF-IDF → LSI baselines fitted per fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pretrain_settings(out: Path) -> dict[str, Any]:
    return {
        "name": out.name,
        "run_dir": str(out),
        "seed": 0,
        "modality": "atac",
        "design": "peak_tokens",
        "data": {"h5ad": ["dataset:granja2019-bmmc-600"], "val_fraction": 0.1},
        "tokenizer": {"max_peaks": 255},
        "objectives": {"masked_peak": 1.0},
        "model": {"preset": "tiny"},
        "train": {
            "steps": 150, "global_batch_tokens": 8192, "micro_batch_size": 32, "lr": 1e-3, "schedule": "cosine",
            "warmup_steps": 15, "min_lr_ratio": 0.1, "log_every": 10, "mask_prob": 0.3, "eval_every": 50,
            "eval_max_blocks": 256, "checkpoint_every": 150, "keep_checkpoints": 1,
        },
    }


def eval_settings(run_dir: Path) -> dict[str, Any]:
    return {
        "model": str(run_dir / "model"),
        "tasks": ["granja-celltypes-600"],
        "out": str(run_dir / "eval"),
        "folds": 5,
        "probes": {"kinds": ["logreg"], "mlp_hidden": [64]},
    }
