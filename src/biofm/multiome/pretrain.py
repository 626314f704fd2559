"""Multiome part of `biofm pretrain`: paired cells -> features fitted on the training cells -> tokens ->
one BERT with the three objectives (`biofm.multiome.objectives`).

The cells are split train / validation at random (seeded) before anything is fitted; the features, value
classes and every context-free baseline come from the training cells only. The validation cells' names
are saved with the tokenizer, so `biofm evaluate` scores cross-modal prediction on cells the model never
trained on, against baselines fitted on the cells it did.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from biofm.errors import BiofmError
from biofm.models.presets import Preset
from biofm.multiome.config import MultiomeDataConfig, MultiomeObjectivesConfig, MultiomeTokenConfig
from biofm.multiome.data import Paired, RoleFeatures, fit_features, read_paired, values
from biofm.multiome.objectives import MultiomeObjective
from biofm.multiome.tokenize import N_TOKEN_TYPES, CellRows, MultiomeVocab, cell_rows
from biofm.pretraining import Prepared, PretrainBase, new_model
from biofm.train.loop import TrainData


class MultiomePretrainConfig(PretrainBase):
    """`biofm pretrain` for paired multi-omics (RNA + ATAC, RNA + protein)."""

    modality: Literal["multiome"] = "multiome"
    data: MultiomeDataConfig
    tokens: MultiomeTokenConfig = Field(default_factory=MultiomeTokenConfig)
    objectives: MultiomeObjectivesConfig = Field(default_factory=MultiomeObjectivesConfig)


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, validation) rows, both sorted, at least one in each."""
    if n < 2:
        raise BiofmError(f"{n} paired cell(s): need at least 2 to hold one out for the honest evaluation")
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def read_data(cfg: MultiomePretrainConfig) -> Paired:
    d = cfg.data
    paired = read_paired(d.h5mu, d.h5ad, d.modalities, d.roles())
    if d.max_cells is not None and d.max_cells < paired.n_cells:
        keep = np.sort(np.random.default_rng([cfg.seed, 7]).choice(paired.n_cells, d.max_cells, replace=False))
        paired = paired.rows(keep)
    return paired


def role_classes(features: dict[str, RoleFeatures], paired: Paired) -> dict[str, Any]:
    """Each role's value classes over the model's features, for every cell of `paired`."""
    out: dict[str, Any] = {}
    for role, f in features.items():
        vals = values(role, paired.counts[role])  # per cell: nothing fitted
        out[role] = f.classes(vals[:, f.columns])
    return out


def _class_logp(classes: Any, train: np.ndarray, n_feat: int, n_bins: int) -> np.ndarray:
    """Per-feature class log-probabilities over the training cells, smoothed by one pseudo-cell spread as the
    pooled class distribution: [n_feat, n_bins]."""
    if sp.issparse(classes):  # RNA: class 0 implicit
        x = sp.csr_matrix(classes[train])
        counts = np.zeros((n_feat, n_bins))
        np.add.at(counts, (x.indices, x.data.astype(np.int64)), 1.0)
        counts[:, 0] = len(train) - counts[:, 1:].sum(1)
    else:
        x = np.asarray(classes)[train]
        counts = np.stack([np.bincount(x[:, j], minlength=n_bins) for j in range(n_feat)]).astype(np.float64)
    pooled = counts.sum(0) / counts.sum()
    p = (counts + pooled) / (counts.sum(1, keepdims=True) + 1.0)
    return np.log(np.maximum(p, 1e-12))


def prepare(cfg: MultiomePretrainConfig, preset: Preset, block: int) -> Prepared:
    from biofm.atac.objectives import query_logit, rate_logit
    from biofm.atac.pretrain import _rates

    if cfg.model.init_from:
        raise BiofmError("model.init_from: continued pretraining is not supported for multiome models yet")
    paired = read_data(cfg)
    train, val = split(paired.n_cells, cfg.data.val_fraction, cfg.seed)
    tok, d = cfg.tokens, cfg.data
    features = {r: fit_features(r, values(r, paired.counts[r]), paired.features[r], train, tok.n_bins, d.max_genes,
                                d.max_peaks) for r in d.roles()}
    settings = {"n_bins": tok.n_bins, "max_rna_tokens": tok.max_rna_tokens, "max_atac_tokens": tok.max_atac_tokens,
                "cross_queries": tok.cross_queries, "seed": cfg.seed, "source": paired.source,
                "val_cells": paired.cells[val].tolist(), "train_cells": len(train)}
    vocab = MultiomeVocab(features, settings)
    classes = role_classes(features, paired)
    rows = cell_rows(vocab, classes, np.arange(paired.n_cells))
    stats: dict[str, np.ndarray] = {}
    r_pos = cfg.train.mask_prob
    r_neg = 0.0
    for role, f in features.items():
        if role == "atac":
            x = classes["atac"]
            q, _ = _rates(x[train])
            p, _ = _rates(rows.data["kept_atac"][train])
            mean_kept = rows.data["kept_atac"][train].nnz / len(train)
            mean_acc = x[train].nnz / len(train)
            r_neg = min(1.0, r_pos * cfg.objectives.query_negatives * mean_kept / max(f.n - mean_acc, 1.0))
            stats["atac_prior"] = rate_logit(q)
            stats["atac_shift"] = query_logit(p, q, r_pos, r_neg) - rate_logit(q)
        else:
            stats[f"{role}_prior"] = _class_logp(classes[role], train, f.n, tok.n_bins)
    n_prot = features["protein"].n if "protein" in features else 0
    seq_len = 1 + (tok.max_rna_tokens if "rna" in features else 0) + \
        (tok.max_atac_tokens if "atac" in features else 0) + n_prot
    model = new_model(cfg, preset, vocab, max(seq_len, preset.max_len), type_vocab_size=N_TOKEN_TYPES,
                      default_arch="bert")
    if model.config.model_type != "bert":
        raise BiofmError(f"model.arch={model.config.model_type}: multiome models are BERT (token types carry the "
                         "modality, inputs_embeds the values)")
    obj = cfg.objectives
    objective = MultiomeObjective(model, vocab, weights=obj.weights(), stats=stats, mask_prob=r_pos, r_neg=r_neg,
                                  temperature=obj.temperature, projection_dim=obj.projection_dim)
    meta: dict[str, Any] = {"source": paired.source, "roles": d.roles(), "cells": {"train": len(train),
                                                                                  "val": len(val)},
                            "dropped_unpaired": paired.dropped,
                            "features": {r: f.n for r, f in features.items()},
                            "file_features": {r: len(paired.features[r]) for r in d.roles()},
                            "subsampled_cells": d.max_cells}
    data = TrainData(train=CellRows({k: v[train] for k, v in rows.data.items()}, train),
                     eval=CellRows({k: v[val] for k, v in rows.data.items()}, val), seq_len=seq_len)
    return Prepared(vocab, objective, data, meta)


__all__ = ["MultiomePretrainConfig", "prepare", "read_data", "role_classes", "split"]
