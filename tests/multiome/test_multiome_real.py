"""Real data: a 300-cell TEA-seq subset through the reader, tokens, objective and a cross-modal baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from biofm.models.presets import get_preset
from biofm.multiome.baselines import MultiomeBaselineConfig, fold_features, regression_baselines, scores, target_values
from biofm.multiome.pretrain import MultiomePretrainConfig, prepare, read_data


def test_teaseq_subset(mirror: Path, tmp_path: Path) -> None:
    cfg = MultiomePretrainConfig.model_validate({
        "modality": "multiome", "run_dir": str(tmp_path / "run"),
        "data": {"h5mu": "dataset:teaseq-pbmc", "modalities": {"rna": "rna", "protein": "adt"}, "max_cells": 300,
                 "max_genes": 300, "val_fraction": 0.2},
        "tokens": {"max_rna_tokens": 64, "cross_queries": 32},
        "model": {"preset": "tiny", "overrides": {"num_hidden_layers": 1}}, "train": {"steps": 1}})
    paired = read_data(cfg)
    assert paired.n_cells == 300 and paired.dropped == {"rna": 0, "protein": 0}
    assert paired.counts["protein"].shape[1] == 46
    (tmp_path / "run").mkdir()
    prep = prepare(cfg, get_preset("tiny"), 64)
    assert prep.meta["features"] == {"rna": 300, "protein": 46} and prep.meta["cells"] == {"train": 240, "val": 60}
    obj = prep.objective.eval()
    idx = np.arange(len(prep.data.eval))
    with torch.no_grad():
        out = obj(**obj.collate(prep.data.eval[idx], idx, honest=True, seed=1).tensors, per_token=True)
    torch.testing.assert_close(out["loss"], out["baseline/per_feature"])
    # RNA PCA -> proteins: ridge beats the per-protein mean per cell on held-out cells
    train, test = np.arange(240), np.arange(240, 300)
    x_tr, x_te = fold_features(paired, "rna", train, test, 0, MultiomeBaselineConfig(n_hvg=300, n_pcs=20))
    y = target_values(paired, "protein", np.arange(46))
    preds = regression_baselines(x_tr, x_te, y[train], MultiomeBaselineConfig(ridge_alpha=10.0))
    ridge = scores(y[test], preds["ridge"], False)
    assert np.nanmean(ridge["per_feature"]) > 0.2
    assert np.isnan(scores(y[test], preds["mean"], False)["per_feature"]).all()  # a constant has no correlation
