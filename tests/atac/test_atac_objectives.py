"""The ATAC objectives' numbers: InfoNCE chance, the query baseline, hand-computed losses, patch targets,
strict extra weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F
from transformers import BertConfig, BertForMaskedLM

from biofm.atac.objectives import HEADS_FILE, PatchObjective, PeakTokenObjective, info_nce, query_logit
from biofm.atac.pretrain import _rates
from biofm.errors import BiofmError


def _bert(type_vocab: int = 3, positions: int = 32) -> BertForMaskedLM:
    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=positions,
                                      type_vocab_size=type_vocab, pad_token_id=0, bos_token_id=2, eos_token_id=4))


COMMON = {"temperature": 0.1, "projection_dim": 8, "view_dropout": 0.5, "pooling": "mean", "peak_prior": True}


def test_info_nce_is_log_2b_minus_1_when_views_are_indistinguishable():
    for b in (2, 5, 32):
        z = F.normalize(torch.ones(2 * b, 4), dim=-1)
        loss, hits = info_nce(z, temperature=0.1)
        np.testing.assert_allclose(loss.numpy(), math.log(2 * b - 1), rtol=1e-6)
        assert loss.shape == (2 * b,) and hits.dtype == torch.bool


def test_info_nce_rewards_matching_views():
    b = 4
    cells = torch.eye(b)  # orthogonal cells; view b and view B + b are the same cell
    loss, hits = info_nce(torch.cat([cells, cells]), temperature=0.05)
    assert hits.all() and float(loss.max()) < 1e-6
    # hand-computed: partner similarity 1, the others 0: loss = -log(e^{1/T} / (e^{1/T} + 2B - 2))
    loss, _ = info_nce(torch.cat([cells, cells]), temperature=1.0)
    np.testing.assert_allclose(loss.numpy(), -math.log(math.e / (math.e + 2 * b - 2)), rtol=1e-6)


def test_query_baseline_is_the_probability_a_query_is_accessible():
    # a peak open in 30% of cells (20% kept after the budget), queries at r_pos 0.5, r_neg 0.01
    logit = query_logit(np.array([0.2]), np.array([0.3]), 0.5, 0.01)[0]
    p = 0.2 * 0.5 / (0.2 * 0.5 + 0.7 * 0.01)
    assert 1 / (1 + math.exp(-logit)) == pytest.approx(p)


def test_rates_come_from_the_rows_given_smoothed_by_one_pseudo_cell():
    X = sp.csr_matrix(np.array([[1, 0, 0, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=np.float32))
    rate, g = _rates(X)
    assert g == pytest.approx(5 / 12)
    np.testing.assert_allclose(rate, (np.array([3, 1, 0, 1]) + g) / 4)


def _peak_objective(weights=None) -> PeakTokenObjective:
    logit = np.array([-1.0, 0.5, 2.0, -0.3, 0.0, 1.0])
    stats = {"per_peak_logit": logit, "global_logit": 0.25}
    return PeakTokenObjective(_bert(), positions=np.arange(1, 7), n_peaks=6, offset=5, r_pos=0.5, r_neg=0.5,
                              weights=weights or {"masked_peak": 1.0}, stats=stats, **COMMON)


def test_masked_peak_loss_equals_a_hand_computed_value():
    obj = _peak_objective().eval()
    X = sp.csr_matrix(np.array([[1, 1, 0, 1, 0, 1], [0, 1, 1, 0, 0, 0]], dtype=np.float32))
    batch = obj.collate({"full": X, "kept": X, "cells": np.arange(2)}, np.array([0, 1]), honest=True, seed=0)
    t = batch.tensors
    groups = [g for g in obj.groups(t, "m") if "target_peaks" in g]
    peaks = np.concatenate([g["target_peaks"].numpy() for g in groups])
    y = np.concatenate([g["target_labels"].numpy() for g in groups])
    assert len(peaks) == batch.counts["masked_peak"] > 0
    # the head starts at zero: every query's logit is its peak's offset, set to the baseline logit
    logit = np.array([-1.0, 0.5, 2.0, -0.3, 0.0, 1.0])[peaks]
    by_hand = np.where(y == 1, np.log1p(np.exp(-logit)), np.log1p(np.exp(logit)))  # -log p(y)
    with torch.no_grad():
        out = obj(**t, per_token=True)
        summed = obj.train()(**t)
    np.testing.assert_allclose(out["loss"].numpy(), by_hand, rtol=1e-5)
    np.testing.assert_allclose(out["baseline/per_peak"].numpy(), by_hand, rtol=1e-5)
    glob = np.where(y == 1, np.log1p(np.exp(-0.25)), np.log1p(np.exp(0.25)))
    np.testing.assert_allclose(out["baseline/global"].numpy(), glob, rtol=1e-5)
    assert float(summed["masked_peak"]) == pytest.approx(by_hand.sum(), rel=1e-5)


def test_contrastive_main_is_scored_against_chance():
    obj = _peak_objective({"contrastive": 1.0}).eval()
    assert (obj.main, obj.reference, obj.constant_baselines()) == ("contrastive", "chance", {})
    X = sp.csr_matrix((np.random.default_rng(0).random((5, 6)) < 0.6).astype(np.float32) + sp.eye(5, 6))
    X.data[:] = 1
    batch = obj.collate({"full": X, "kept": X, "cells": np.arange(5)}, np.arange(5), honest=True, seed=0)
    assert batch.counts == {"contrastive": 10}
    assert sum(len(g["rows"]) for g in obj.groups(batch.tensors, "v")) == 10
    with torch.no_grad():
        out = obj(**batch.tensors, per_token=True)
    np.testing.assert_allclose(out["baseline/chance"].numpy(), math.log(9))
    assert out["loss"].shape == (10,)


def _patch_objective(weights=None, n_peaks=23) -> PatchObjective:
    stats = {"per_peak_logit": np.linspace(-2, 1, n_peaks), "global_logit": -0.5}
    return PatchObjective(_bert(type_vocab=2), n_peaks=n_peaks, strides=[5, 2], channels=4, mask_prob=0.5,
                          weights=weights or {"masked_patch": 1.0}, stats=stats, **COMMON)


def test_masked_patch_targets_are_the_hidden_patches_peaks():
    obj = _patch_objective().eval()
    assert (obj.patch_size, obj.n_patches) == (10, 3)  # 23 peaks: the last patch has 3 real peaks
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((4, 23)) < 0.3).astype(np.float32))
    batch = obj.collate({"full": X, "kept": None, "cells": np.arange(4)}, np.arange(4), honest=True, seed=0)
    t = batch.tensors
    hide = t["patch_mask"].numpy()
    rows, cols = np.nonzero(hide)
    dense = X.toarray()
    for k, (r, c) in enumerate(zip(rows, cols, strict=True)):
        peaks = np.arange(c * 10, c * 10 + 10)
        valid = peaks < 23
        np.testing.assert_array_equal(t["target_valid"].numpy()[k], valid)
        np.testing.assert_array_equal(t["target_labels"].numpy()[k][valid], dense[r, peaks[valid]])
    assert batch.counts["masked_patch"] == int(t["target_valid"].sum())
    with torch.no_grad():  # the zero-started head scores exactly the per-peak baseline
        out = obj(**t, per_token=True)
    np.testing.assert_allclose(out["loss"].numpy(), out["baseline/per_peak"].numpy(), rtol=1e-5)
    assert len(out["loss"]) == batch.counts["masked_patch"]


def test_hidden_patches_do_not_reach_the_encoder():
    """Kernel = stride: changing a hidden patch's peaks changes nothing the model sees."""
    obj = _patch_objective().eval()
    x = torch.zeros(1, 30)
    mask = torch.tensor([[False, True, False]])
    with torch.no_grad():
        a = obj.encode(x, mask).last_hidden_state
        x[0, 10:20] = 1.0
        b = obj.encode(x, mask).last_hidden_state
        x[0, 0] = 1.0
        c = obj.encode(x, mask).last_hidden_state
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_extra_weights_load_strictly(tmp_path):
    obj = _patch_objective({"masked_patch": 1.0, "contrastive": 0.5})
    obj.save_pretrained(tmp_path)
    other = _patch_objective({"masked_patch": 1.0, "contrastive": 0.5})
    with torch.no_grad():
        other.patcher.conv[0].weight.add_(1.0)
    other.load_weights(tmp_path)
    torch.testing.assert_close(other.patcher.conv[0].weight, obj.patcher.conv[0].weight)
    no_contrastive = _patch_objective({"masked_patch": 1.0})
    with pytest.raises(BiofmError, match=f"{HEADS_FILE}: heads do not match the objective \\(projection"):
        no_contrastive.load_weights(tmp_path)


def test_length_groups_change_the_cost_not_the_loss():
    n_peaks = 40
    stats = {"per_peak_logit": np.linspace(-2, 1, n_peaks), "global_logit": -0.5}
    obj = PeakTokenObjective(_bert(positions=64), positions=np.arange(1, n_peaks + 1), n_peaks=n_peaks, offset=5,
                             r_pos=0.4, r_neg=0.1, weights={"masked_peak": 1.0, "contrastive": 0.5}, stats=stats,
                             **COMMON).eval()
    with torch.no_grad():
        obj.head[-1].weight.normal_()  # a head that uses the context
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((12, n_peaks)) < rng.uniform(0.05, 0.9, (12, 1))).astype(np.float32)
                      + sp.eye(12, n_peaks))
    X.data[:] = 1
    rows = {"full": X, "kept": X, "cells": np.arange(12)}
    out = {}
    for overhead in (0, 10**9):  # one group per length run, or one padded batch
        obj.group_overhead = overhead
        batch = obj.collate(rows, np.arange(12), honest=True, seed=0)
        out[overhead] = (len(obj.groups(batch.tensors, "m")), batch.tokens, obj(**batch.tensors))
    assert out[0][0] > 1 and out[10**9][0] == 1 and out[0][1] == out[10**9][1]
    for name in ("masked_peak", "contrastive"):
        assert float(out[0][2][name]) == pytest.approx(float(out[10**9][2][name]), rel=1e-5)
