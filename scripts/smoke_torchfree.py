"""The single-cell path that needs no torch, on the newest pandas / anndata / numpy.

pandas 3, anndata 0.13 and numpy 2.5 need Python >= 3.12, for which there is no CPU torch wheel on the
machines CI runs on; scripts/smoke_wheel.sh installs biofm's wheel there without torch (and without
what needs it) and runs this: a cell task read from an h5ad, the PCA / HVG baselines, the embedding
metrics (Leiden, ASW, iLISI), the counts reader and the gene vocabulary. Run in an empty folder.
    python scripts/smoke_torchfree.py
"""

from __future__ import annotations

import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold


def main() -> int:
    from biofm.cells.baselines import CELL_BASELINES, CellBaselineConfig, pca_embedding
    from biofm.cells.h5ad import read_counts
    from biofm.cells.metrics import embedding_report
    from biofm.cells.tasks import load_cell_task
    from biofm.cells.vocab import build_vocab, gene_medians

    rng = np.random.default_rng(0)
    n, genes = 150, 80
    kind = rng.integers(0, 3, n)
    mu = np.full((n, genes), 0.5)  # [cells, genes]: three types, ten marker genes each
    for t in range(3):
        mu[kind == t, t * 10 : (t + 1) * 10] = 6.0
    a = ad.AnnData(sp.csr_matrix(rng.poisson(mu).astype(np.float32)))
    a.var_names = [f"G{i}" for i in range(genes)]
    a.obs_names = [f"c{i}" for i in range(n)]
    a.obs["cell_type"] = pd.Categorical(np.array(["A", "B", "C"])[kind])
    a.obs["batch"] = np.where(rng.random(n) < 0.5, "b1", "b2")
    a.write_h5ad("torchfree.h5ad")

    task = load_cell_task("torchfree.h5ad", "cell_type", "batch")
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(np.zeros(n), task.labels))
    cfg = CellBaselineConfig(n_hvg=40, n_pcs=10)
    for name in ("pca_logreg", "pca_knn", "hvg_logreg"):
        preds = CELL_BASELINES[name](task, folds, 0, cfg)
        acc = float(np.mean(np.concatenate([p.pred == task.labels[p.test_idx] for p in preds])))
        if acc < 0.9:
            print(f"  {name}: accuracy {acc:.2f} on separable cells", file=sys.stderr)
            return 1
    (row,) = embedding_report({"pca": pca_embedding(task, 0, cfg)}, task, 0)
    if not (row["leiden_ari"] > 0.5 and 0.5 < row["ilisi_norm"] <= 1.0 and row["batch_asw"] > 0.5):
        print(f"  implausible embedding metrics: {row}", file=sys.stderr)
        return 1
    counts = read_counts("torchfree.h5ad")
    if gene_medians([counts], build_vocab([counts])).shape != (genes,):
        print("  gene medians of the wrong shape", file=sys.stderr)
        return 1
    versions = ", ".join(f"{m.__name__} {m.__version__}" for m in (pd, ad, np))
    print(f"  torch-free cell path ok on {versions} (torch imported: {'torch' in sys.modules})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
