"""Single-cell part of `biofm pretrain`: h5ad → tokenised cells → a weighted mix of cell objectives."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from biofm.cells.config import CellDataConfig, CellTokenizerConfig
from biofm.cells.objectives import OBJECTIVES, VALUE_OBJECTIVES, CellObjective
from biofm.config import Schema
from biofm.errors import BiofmError
from biofm.models.presets import Preset
from biofm.pretraining import Prepared, PretrainBase, new_model
from biofm.train.loop import TrainData


class CellObjectivesConfig(Schema):
    """Loss weights (0 = off) and settings; the resolved mix is saved in the run's config.yaml."""

    value_ce: float = Field(0.0, ge=0, description="cross-entropy over value bins")
    value_ordinal: float = Field(0.0, ge=0, description="cumulative-link (ordinal) NLL over value bins")
    value_mse: float = Field(0.0, ge=0, description="squared error on log1p(count)")
    value_nb: float = Field(0.0, ge=0, description="negative-binomial NLL of the count")
    gene_id: float = Field(0.0, ge=0, description="masked gene-id prediction (rank_value mode)")
    contrastive: float = Field(0.0, ge=0, description="InfoNCE between two random gene subsets of a cell")
    temperature: float = Field(0.1, gt=0)
    projection_dim: int = Field(128, ge=8)
    gene_prior: bool = Field(True, description="value heads start at each gene's own value distribution (a "
                                               "learned per-gene offset); false = learn it from scratch")

    def weights(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in OBJECTIVES}


class CellPretrainConfig(PretrainBase):
    modality: Literal["cells"] = "cells"
    data: CellDataConfig
    tokenizer: CellTokenizerConfig = Field(default_factory=CellTokenizerConfig)
    objectives: CellObjectivesConfig = Field(default_factory=lambda: CellObjectivesConfig(value_ordinal=1.0))

    @model_validator(mode="after")
    def _coherent(self) -> CellPretrainConfig:
        w = self.objectives.weights()
        masked = [n for n in (*VALUE_OBJECTIVES, "gene_id") if w[n] > 0]
        if not masked:
            raise ValueError("objectives: give a masked objective a weight > 0 (value_ce, value_ordinal, value_mse, "
                             "value_nb or gene_id); the health verdict is about it")
        if self.tokenizer.mode == "rank_value" and any(w[n] > 0 for n in VALUE_OBJECTIVES):
            raise ValueError("objectives: rank_value tokens carry no values; use gene_id (and contrastive)")
        if self.tokenizer.mode == "gene_value" and w["gene_id"] > 0:
            raise ValueError("objectives.gene_id needs tokenizer.mode=rank_value (gene ids are the inputs here)")
        return self


def _stat_arrays(stats, vocab, n_bins: int) -> dict[str, np.ndarray]:
    """Context-free baselines as lookups by gene token id and bin."""
    from biofm.cells.data import marginal_logp

    unigram, gene_logp = marginal_logp(stats)
    gene_counts = np.asarray(stats.gene_token_counts, dtype=np.float64)
    real = np.asarray(sorted(set(range(vocab.vocab_size)) - set(vocab.special_ids)))
    gene_unigram = np.full(vocab.vocab_size, -30.0)
    c = gene_counts[real] + 1.0
    gene_unigram[real] = np.log(c / c.sum())
    return {
        "unigram_logp": np.asarray(unigram)[:n_bins],
        "gene_logp": np.asarray(gene_logp)[:, :n_bins],
        "global_mean_log1p": np.asarray(stats.global_mean_log1p),
        "gene_mean_log1p": np.asarray(stats.gene_mean_log1p),
        "gene_nb_mean": np.asarray(stats.gene_nb_mean),
        "gene_nb_theta": np.asarray(stats.gene_nb_theta),
        "gene_unigram_logp": gene_unigram,
    }


def prepare(cfg: CellPretrainConfig, preset: Preset, block: int) -> Prepared:
    from biofm.cells.data import build_cell_dataset
    from biofm.cells.tokenize import n_value_bins
    from biofm.cells.vocab import GeneVocab

    vocab = None
    if cfg.model.init_from:
        vocab = GeneVocab.load(cfg.model.init_from)
    ds = build_cell_dataset(cfg.data, cfg.tokenizer, cfg.seed, vocab=vocab)
    seq_len = cfg.tokenizer.max_genes + 1
    if seq_len > preset.max_len and "max_position_embeddings" not in cfg.model.overrides:
        raise BiofmError(f"tokenizer.max_genes={cfg.tokenizer.max_genes} needs {seq_len} positions, more than the "
                         f"{preset.name} preset's {preset.max_len}; lower it or set "
                         f"model.overrides.max_position_embeddings")
    n_bins = n_value_bins(cfg.tokenizer)
    model = new_model(cfg, preset, ds.vocab, max(seq_len, preset.max_len), type_vocab_size=n_bins + 2,
                      default_arch="bert")
    if model.config.model_type != "bert":
        raise BiofmError(f"model.arch={model.config.model_type}: cell models are BERT (the token-type embedding "
                         f"carries the value)")
    real = np.asarray(sorted(set(range(ds.vocab.vocab_size)) - set(ds.vocab.special_ids)))
    objective = CellObjective(
        model, mode=cfg.tokenizer.mode, weights=cfg.objectives.weights(), n_bins=n_bins,
        mask_prob=cfg.train.mask_prob, stats=_stat_arrays(ds.stats, ds.vocab, n_bins), gene_ids=real,
        special_ids=tuple(int(i) for i in sorted(ds.vocab.special_ids)), mask_id=ds.vocab.mask_id,
        pad_id=ds.vocab.pad_id, temperature=cfg.objectives.temperature,
        projection_dim=cfg.objectives.projection_dim, gene_prior=cfg.objectives.gene_prior,
    )
    data = TrainData(train=ds.train, eval=ds.val, seq_len=seq_len)
    return Prepared(ds.vocab, objective, data, {"dataset": str(ds.path), **ds.meta})
