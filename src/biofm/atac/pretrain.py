"""scATAC part of `biofm pretrain`: h5ad peaks → binarised cells → one of two model designs.

The cells are read whole (a peak matrix of 14k cells x 10k peaks at ~2% density is ~10 MB as CSR) and
kept as sparse rows; batches are made from them on the fly (`PeakRows`), so nothing is tokenised to
disk and, in the peak-token design, no cell is ever densified over all peaks.

The context-free baselines come from the TRAINING cells only: each peak's rate of being accessible
(q_j) and of being a kept accessible peak after the token budget (p_j), each smoothed by one pseudo-cell
at the global rate (so a peak never seen open is not scored as impossible).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from biofm.atac.config import AtacDataConfig, AtacPatchConfig, AtacTokenizerConfig
from biofm.atac.objectives import PatchObjective, PeakTokenObjective, query_logit, rate_logit
from biofm.atac.tokenize import N_TOKEN_TYPES, SPECIAL_TOKENS, PeakVocab, aligned_binary, budget
from biofm.config import Schema
from biofm.errors import BiofmError
from biofm.models.presets import Preset
from biofm.pretraining import Prepared, PretrainBase, new_model
from biofm.train.loop import TrainData

DESIGN_COMPONENT = {"peak_tokens": "masked_peak", "patch_cnn": "masked_patch"}


class AtacObjectivesConfig(Schema):
    """Loss weights (0 = off) and settings; the resolved mix is saved in the run's config.yaml."""

    masked_peak: float = Field(0.0, ge=0, description="peak_tokens: is each query peak accessible (Bernoulli)")
    masked_patch: float = Field(0.0, ge=0, description="patch_cnn: reconstruct the peaks of hidden patches")
    contrastive: float = Field(0.0, ge=0, description="InfoNCE between two peak-dropout views of each cell")
    temperature: float = Field(0.1, gt=0)
    projection_dim: int = Field(128, ge=8)
    view_dropout: float = Field(0.5, ge=0, lt=1, description="share of a cell's peaks each view drops")
    pooling: Literal["mean", "cls"] = Field("mean", description="contrastive: mean of the peak/patch "
                                                                "vectors or the <cls> vector")
    query_negatives: float = Field(1.0, gt=0, description="masked_peak: inaccessible query peaks drawn per "
                                                          "hidden accessible one (expected, over training cells)")
    peak_prior: bool = Field(True, description="the masked heads start at each peak's own rate (a learned "
                                               "per-peak offset); false = at the global rate")

    def weights(self) -> dict[str, float]:
        return {"masked_peak": self.masked_peak, "masked_patch": self.masked_patch, "contrastive": self.contrastive}


class AtacPretrainConfig(PretrainBase):
    """`biofm pretrain` for scATAC: the design, the data, each design's input settings and the objectives.

    With no `objectives` key the design's masked objective is the only one (masked_peak for peak_tokens,
    masked_patch for patch_cnn); contrastive alone is allowed, and is then judged against chance."""

    modality: Literal["atac"] = "atac"
    design: Literal["peak_tokens", "patch_cnn"] = Field(
        "peak_tokens", description="peak_tokens: accessible peaks as tokens; patch_cnn: the seed's CNN patches of "
                                   "the whole peak vector")
    data: AtacDataConfig
    tokenizer: AtacTokenizerConfig = Field(default_factory=AtacTokenizerConfig)
    patches: AtacPatchConfig = Field(default_factory=AtacPatchConfig)
    objectives: AtacObjectivesConfig = Field(default_factory=AtacObjectivesConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_objective(cls, data: Any) -> Any:
        """No objectives given: the design's masked objective alone."""
        if isinstance(data, dict) and "objectives" not in data:
            design = data.get("design", "peak_tokens")
            data = {**data, "objectives": {DESIGN_COMPONENT.get(design, "masked_peak"): 1.0}}
        return data

    @model_validator(mode="after")
    def _coherent(self) -> AtacPretrainConfig:
        w = self.objectives.weights()
        if not any(v > 0 for v in w.values()):
            raise ValueError("objectives: give masked_peak / masked_patch or contrastive a weight > 0")
        other = "masked_patch" if self.design == "peak_tokens" else "masked_peak"
        if w[other] > 0:
            raise ValueError(f"objectives.{other} belongs to design "
                             f"{'patch_cnn' if other == 'masked_patch' else 'peak_tokens'}; with design "
                             f"{self.design} use {DESIGN_COMPONENT[self.design]}")
        return self


class PeakRows:
    """Cells as sparse rows the objective collates: `rows[idx]` gives {"full": accessible peaks (CSR),
    "kept": the token-budget subset (CSR, or None), "cells": the cells' row numbers}."""

    def __init__(self, full: sp.csr_matrix, kept: sp.csr_matrix | None, cells: np.ndarray):
        self.full, self.kept, self.cells = full, kept, np.asarray(cells, dtype=np.int64)

    def __len__(self) -> int:
        return self.full.shape[0]

    def __getitem__(self, idx: np.ndarray) -> dict[str, Any]:
        idx = np.asarray(idx, dtype=np.int64)
        return {"full": self.full[idx], "kept": self.kept[idx] if self.kept is not None else None,
                "cells": self.cells[idx]}


def read_cells(cfg: AtacPretrainConfig, vocab: PeakVocab | None) -> tuple[sp.csr_matrix, PeakVocab,
                                                                          list[dict[str, Any]]]:
    """Every file's binarised cells, stacked, with the columns of `vocab` (or of the first file's peaks
    when there is no vocabulary yet: the others must then hold the same peaks). Returns (X, the peaks the
    columns are, per-file facts)."""
    from biofm.atac.peaks import read_peaks
    from biofm.datasets import resolve_all

    paths = resolve_all(cfg.data.h5ad)
    mats = []
    facts = []
    for p in paths:
        m = read_peaks(p, layer=cfg.data.layer, peak_column=cfg.data.peak_column)
        mats.append(m)
        facts.append({"path": str(p), "cells": m.n_cells, "peaks": m.n_peaks})
    if vocab is None:
        first = mats[0]
        vocab = PeakVocab(first.chrom, first.start, first.end)
        for p, m in zip(paths[1:], mats[1:], strict=True):
            if m.n_peaks != first.n_peaks or not vocab.align(m.chrom, m.start, m.end)[1].all():
                raise BiofmError(f"{p}: its peaks differ from those of {paths[0]}; files pretrained together must "
                                 "hold the same peaks")
    parts = []
    for p, m, f in zip(paths, mats, facts, strict=True):
        X, coverage = aligned_binary(m, vocab, str(p))
        f["peak_coverage"] = coverage
        empty = np.flatnonzero(np.diff(X.indptr) == 0)
        if len(empty):
            raise BiofmError(f"{p}: cell {m.cell_names[empty[0]]!r} has no accessible peak among the model's peaks "
                             f"({len(empty)} such cells); drop them")
        parts.append(X)
    X = sp.csr_matrix(sp.vstack(parts, format="csr"), dtype=np.float32)
    X.sort_indices()
    return X, vocab, facts


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, validation) cell rows, both sorted; at least one cell in each."""
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    if n < 2:
        raise BiofmError(f"{n} cell(s): need at least 2 to hold one out for the honest evaluation")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _rates(X: sp.csr_matrix) -> tuple[np.ndarray, float]:
    """Per-peak rate over the rows of binary X, smoothed by one pseudo-cell at the global rate; and the
    global rate."""
    n, peaks = X.shape
    counts = np.bincount(X.indices, minlength=peaks).astype(np.float64)
    g = counts.sum() / (n * peaks)
    return (counts + g) / (n + 1), float(g)


def _steady_heap() -> None:
    """Keep the process's heap from growing step after step.

    Cells hold different numbers of peaks, so every batch has other tensor shapes. glibc's malloc raises
    its mmap threshold whenever a large block is freed, after which large tensors come from the heap and
    fragment it: a 14k-cell run grew by ~20 MB a step (4.4 GB at step 170). A fixed threshold
    (M_MMAP_THRESHOLD = 1 MB) sends large blocks back to the system when freed: the same run stays flat.
    Process-wide and harmless elsewhere; a no-op off glibc."""
    import contextlib
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # musl or another libc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # -3: M_MMAP_THRESHOLD in glibc's malloc.h


def prepare(cfg: AtacPretrainConfig, preset: Preset, block: int) -> Prepared:
    _steady_heap()
    vocab = None
    if cfg.model.init_from:  # continued pretraining: the model's own peaks, positions and settings
        from biofm.models.load import resolve_model_dir

        vocab = PeakVocab.load(resolve_model_dir(cfg.model.init_from))
    X, vocab_read, facts = read_cells(cfg, vocab)
    n_cells, n_peaks = X.shape
    train, val = _split(n_cells, cfg.data.val_fraction, cfg.seed)
    q, g_q = _rates(X[train])
    tok = cfg.tokenizer
    settings = {"design": cfg.design, "max_peaks": tok.max_peaks, "seed": cfg.seed,
                **PeakVocab.layout(vocab_read.chrom, vocab_read.end, tok.position_bin_bp)}
    if vocab is not None:
        settings = {**settings, **{k: vocab.settings[k] for k in ("position_bin_bp", "chromosomes",
                                                                  "bins_per_chromosome") if k in vocab.settings}}
    counts = np.bincount(X[train].indices, minlength=n_peaks)
    vocab = PeakVocab(vocab_read.chrom, vocab_read.start, vocab_read.end, n_cells=counts, settings=settings)
    obj = cfg.objectives
    common = {"weights": obj.weights(), "temperature": obj.temperature, "projection_dim": obj.projection_dim,
              "view_dropout": obj.view_dropout, "pooling": obj.pooling, "peak_prior": obj.peak_prior}
    per_cell = np.diff(X.indptr)
    meta: dict[str, Any] = {"inputs": facts, "design": cfg.design, "peaks": n_peaks,
                            "cells": {"train": len(train), "val": len(val)},
                            "accessible_per_cell": {"mean": float(per_cell.mean()),
                                                    "p99": float(np.percentile(per_cell, 99))},
                            "binarisation": "count > 0"}
    if cfg.design == "peak_tokens":
        kept = budget(X, np.arange(n_cells), tok.max_peaks, cfg.seed)
        p, g_p = _rates(kept[train])
        r_pos = cfg.train.mask_prob
        mean_kept = kept[train].nnz / len(train)
        mean_acc = X[train].nnz / len(train)
        r_neg = min(1.0, r_pos * obj.query_negatives * mean_kept / max(n_peaks - mean_acc, 1.0))
        stats = {"per_peak_logit": query_logit(p, q, r_pos, r_neg), "global_logit": query_logit(g_p, g_q, r_pos, r_neg)}
        positions, n_positions = vocab.positions()
        seq_len = tok.max_peaks + 1
        model = new_model(cfg, preset, vocab, max(n_positions, preset.max_len), type_vocab_size=N_TOKEN_TYPES,
                          default_arch="bert")
        _check_bert(model, cfg)
        objective: PeakTokenObjective | PatchObjective = PeakTokenObjective(
            model, positions=positions, n_peaks=n_peaks, offset=vocab.offset, r_pos=r_pos, r_neg=r_neg,
            stats=stats, **common)
        meta.update({"max_peaks": tok.max_peaks, "cells_over_budget": int((per_cell > tok.max_peaks).sum()),
                     "query_rates": {"accessible": r_pos, "inaccessible": r_neg}, "position_ids": n_positions})
        rows_train, rows_val = PeakRows(X[train], kept[train], train), PeakRows(X[val], kept[val], val)
    else:
        pc = cfg.patches
        n_patches = -(-n_peaks // pc.patch_size)
        seq_len = n_patches + 1
        # the patches are the inputs: the word embeddings hold only the specials (<cls> is used)
        specials = SimpleNamespace(vocab_size=len(SPECIAL_TOKENS), pad_id=vocab.pad_id, mask_id=vocab.mask_id,
                                   cls_id=vocab.cls_id, eos_id=vocab.eos_id)
        model = new_model(cfg, preset, specials, max(seq_len, preset.max_len), default_arch="bert")
        _check_bert(model, cfg)
        stats = {"per_peak_logit": rate_logit(q), "global_logit": rate_logit(g_q)}
        objective = PatchObjective(model, n_peaks=n_peaks, strides=pc.conv_strides, channels=pc.conv_channels,
                                   mask_prob=cfg.train.mask_prob, stats=stats, **common)
        meta.update({"patch_size": pc.patch_size, "patches": n_patches})
        rows_train, rows_val = PeakRows(X[train], None, train), PeakRows(X[val], None, val)
    if cfg.model.init_from:
        _continue_heads(objective, cfg.model.init_from)
    data = TrainData(train=rows_train, eval=rows_val, seq_len=seq_len)
    return Prepared(vocab, objective, data, meta)


def _check_bert(model: Any, cfg: AtacPretrainConfig) -> None:
    if model.config.model_type != "bert":
        raise BiofmError(f"model.arch={model.config.model_type}: ATAC models are BERT (token types carry the peak "
                         "state, position ids the genomic window, inputs_embeds the CNN patches)")
    if cfg.model.init_from and model.config.type_vocab_size < (N_TOKEN_TYPES if cfg.design == "peak_tokens" else 1):
        raise BiofmError(f"{cfg.model.init_from}: not a {cfg.design} ATAC model (too few token types)")


def _continue_heads(objective: PeakTokenObjective | PatchObjective, init_from: str) -> None:
    """Continued pretraining: the heads (and the CNN) the model was trained with, where the objective has them."""
    from pathlib import Path

    from safetensors.torch import load_file

    from biofm.atac.objectives import HEADS_FILE
    from biofm.models.load import resolve_model_dir

    file = resolve_model_dir(init_from) / HEADS_FILE
    saved = load_file(str(file)) if file.is_file() else {}
    own = objective.state_dict()
    if isinstance(objective, PatchObjective) and not any(k.startswith("patcher.") for k in saved):
        raise BiofmError(f"{Path(file)}: no patch CNN to continue from; init_from needs a patch_cnn ATAC model")
    take = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    objective.load_state_dict(take, strict=False)
