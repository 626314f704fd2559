"""Single-cell demo settings: a small cell model on 700 PBMCs, cell types against PCA/HVG baselines.

Pretraining uses the 700 labelled PBMCs' counts without their labels (unsupervised, as scGPT and
Geneformer evaluate on the cells they embed); the evaluation then predicts the 10 cell types from
the frozen embeddings (task `pbmc-celltypes`) under 5-fold stratified CV (the rarest type has 8
cells), beside log-normalised HVG → PCA(50) and HVG logistic-regression baselines fitted per fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pretrain_settings(out: Path) -> dict[str, Any]:
    return {
        "name": out.name,
        "run_dir": str(out),
        "seed": 0,
        "modality": "cells",
        "data": {"h5ad": ["dataset:pbmc700"], "val_fraction": 0.1},
        "tokenizer": {"mode": "gene_value", "binning": "quantile", "n_bins": 11, "max_genes": 255,
                      "selection": "sample", "zero_fraction": 0.1},
        "objectives": {"value_ordinal": 1.0, "contrastive": 0.2},
        "model": {"preset": "tiny"},
        "train": {
            "steps": 200, "global_batch_tokens": 8192, "micro_batch_size": 32, "lr": 1e-3,
            "schedule": "cosine", "warmup_steps": 20, "min_lr_ratio": 0.1, "log_every": 10, "mask_prob": 0.3,
            "eval_every": 50, "eval_max_blocks": 256, "checkpoint_every": 100, "keep_checkpoints": 1,
        },
    }


def eval_settings(run_dir: Path) -> dict[str, Any]:
    return {
        "model": str(run_dir / "model"),
        "tasks": ["pbmc-celltypes"],
        "out": str(run_dir / "eval"),
        "folds": 5,
        "probes": {"kinds": ["logreg"], "mlp_hidden": [64]},
    }
