"""A notebook session with biofm's Python API: pretrain a small cell model, evaluate it against the
baselines and its random-weights twin, and embed cells into an AnnData in memory (scanpy style).

    .venv/bin/python examples/notebook_session.py [--steps 200] [--out runs/notebook-cells]

Each cell of a notebook is one block below; the same calls run from `biofm pretrain / evaluate / embed`.
Data: the registry's `pbmc700` (fetched with its checksum, or taken from BIOFM_DATA_MIRROR).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import biofm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default="runs/notebook-cells")
    args = ap.parse_args()

    # 1. pretrain: a dict config (a YAML path works too), keyword overrides with __ between levels
    run = biofm.pretrain({
        "name": Path(args.out).name, "run_dir": args.out, "modality": "cells",
        "data": {"h5ad": ["dataset:pbmc700"], "val_fraction": 0.1},
        "tokenizer": {"mode": "gene_value", "binning": "quantile", "n_bins": 11, "max_genes": 255},
        "objectives": {"value_ordinal": 1.0, "contrastive": 0.2},
        "model": {"preset": "tiny"},
        "train": {"steps": 200, "global_batch_tokens": 8192, "micro_batch_size": 32, "lr": 1e-3,
                  "warmup_steps": 20, "eval_every": 50, "checkpoint_every": 100},
    }, train__steps=args.steps, overwrite=True)
    print("health:", run.verdict, "| eval loss", round(run.eval_loss, 4))

    # 2. evaluate: results.csv as a DataFrame, the verdicts in its attrs
    table = biofm.evaluate(run, ["pbmc-celltypes"], folds=5, probes__kinds=["logreg"])
    print(table[["method", "kind", "mcc_mean", "mcc_std"]].to_string(index=False))
    print(*table.attrs["verdicts"], sep="\n")

    # 3. embed into an AnnData in memory: obsm["X_biofm"] (mean-pooled) and obsm["X_biofm_cls"]
    import anndata as ad

    adata = ad.read_h5ad(biofm.dataset_path("pbmc700"))
    biofm.embed(adata, run)
    print("obsm:", {k: v.shape for k, v in adata.obsm.items()}, "| uns['biofm']:", adata.uns["biofm"])


if __name__ == "__main__":
    main()
