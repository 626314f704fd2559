"""Synthetic paired cells for the multiome tests: two cell groups whose RNA and proteins (or peaks) both
depend on the group, so one modality predicts the other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp


def synthetic_mudata(n: int = 80, genes: int = 40, second: str = "protein", seed: int = 0,
                     extra_rna: int = 0, extra_second: int = 0):
    """MuData with `rna` and `adt` (proteins) or `atac` (peaks); cells c0.. ; group = cell index parity.
    `extra_rna` / `extra_second` cells exist in one modality only."""
    import anndata as ad
    import mudata as md
    import pandas as pd

    rng = np.random.default_rng(seed)
    group = np.arange(n) % 2
    rate = np.where(group[:, None] == 1, 6.0, 0.3) * (np.arange(genes) < genes // 2) + \
        np.where(group[:, None] == 0, 6.0, 0.3) * (np.arange(genes) >= genes // 2)
    rna = rng.poisson(rate).astype(np.int32)
    rna[:, 0] += 1  # no cell without counts
    names = [f"c{i}" for i in range(n)]
    rna_names = names + [f"r{i}" for i in range(extra_rna)]
    rna = np.vstack([rna, rng.poisson(2.0, (extra_rna, genes)).astype(np.int32)])
    a_rna = ad.AnnData(sp.csr_matrix(rna), obs=pd.DataFrame(index=rna_names),
                       var=pd.DataFrame(index=[f"G{j}" for j in range(genes)]))
    if second == "protein":
        p = 8
        lam = np.where(group[:, None] == 1, 200.0, 5.0) * (np.arange(p) < 4) + 20.0
        x = rng.poisson(lam).astype(np.int32)
        var = [f"P{j}" for j in range(p)]
        mod = "adt"
    else:
        p = 30
        prob = np.where(group[:, None] == 1, 0.8, 0.05) * (np.arange(p) < 15) + \
            np.where(group[:, None] == 0, 0.8, 0.05) * (np.arange(p) >= 15)
        x = (rng.random((n, p)) < prob).astype(np.int32)
        x[:, 0] = 1
        var = [f"chr1_{1000 * j}_{1000 * j + 500}" for j in range(p)]
        mod = "atac"
    second_names = names + [f"s{i}" for i in range(extra_second)]
    x = np.vstack([x, np.ones((extra_second, p), dtype=np.int32)])
    a2 = ad.AnnData(sp.csr_matrix(x), obs=pd.DataFrame(index=second_names), var=pd.DataFrame(index=var))
    mdata = md.MuData({"rna": a_rna, mod: a2})
    mdata.obs["cell_type"] = pd.Series(np.where(group == 0, "A", "B"), index=names).reindex(mdata.obs_names)
    return mdata


@pytest.fixture
def h5mu_protein(tmp_path: Path) -> Path:
    path = tmp_path / "paired_protein.h5mu"
    synthetic_mudata(second="protein").write(path)
    return path


@pytest.fixture
def h5mu_atac(tmp_path: Path) -> Path:
    path = tmp_path / "paired_atac.h5mu"
    synthetic_mudata(second="atac").write(path)
    return path
