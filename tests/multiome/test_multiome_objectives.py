"""Objectives: each baseline is the feature's training marginal, the model starts exactly there, queries
cannot see each other, and on an easy signal every objective goes below its baseline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from biofm.models.presets import get_preset
from biofm.multiome.pretrain import MultiomePretrainConfig, _class_logp, prepare


def _prepared(path: Path, tmp_path: Path, second: str, **objectives: float):
    mods = {"rna": "rna", "protein": "adt"} if second == "protein" else {"rna": "rna", "atac": "atac"}
    cfg = MultiomePretrainConfig.model_validate({
        "modality": "multiome", "run_dir": str(tmp_path / "run"),
        "data": {"h5mu": str(path), "modalities": mods, "val_fraction": 0.25, "max_genes": 40, "max_peaks": 30},
        "tokens": {"n_bins": 5, "max_rna_tokens": 32, "max_atac_tokens": 32, "cross_queries": 16},
        "objectives": objectives or {"masked": 1.0, "cross": 1.0, "contrastive": 0.5},
        "model": {"preset": "tiny", "overrides": {"num_hidden_layers": 1}},
        "train": {"steps": 1, "mask_prob": 0.3, "micro_batch_size": 8, "global_batch_tokens": 512}})
    (tmp_path / "run").mkdir(exist_ok=True)
    return prepare(cfg, get_preset("tiny"), 64)


def test_class_marginal_is_smoothed_training_frequency() -> None:
    classes = sp.csr_matrix(np.array([[1, 0], [2, 0], [1, 3], [0, 0]], dtype=np.float32))  # RNA: 0 implicit
    logp = _class_logp(classes, np.arange(3), 2, 4)  # training cells 0..2 only
    counts = np.array([[0, 2, 1, 0], [2, 0, 0, 1]], dtype=float)
    pooled = counts.sum(0) / counts.sum()
    assert np.allclose(np.exp(logp), (counts + pooled) / (3 + 1))


@pytest.mark.parametrize("second", ["protein", "atac"])
def test_step0_scores_exactly_the_baseline(second: str, tmp_path: Path, h5mu_protein: Path, h5mu_atac: Path) -> None:
    prep = _prepared(h5mu_protein if second == "protein" else h5mu_atac, tmp_path, second)
    obj = prep.objective.eval()
    rows = prep.data.eval
    idx = np.arange(len(rows))
    for main in ("cross", "masked"):
        obj.main = main
        with torch.no_grad():
            out = obj(**prep.objective.collate(rows[idx], idx + 1000, honest=True, seed=1).tensors, per_token=True)
        assert len(out["loss"]) > 20
        torch.testing.assert_close(out["loss"], out["baseline/per_feature"])  # heads start at the marginal
    assert obj.constant_baselines() == {}


def test_masked_rna_baseline_is_renormalised_over_detected_classes(tmp_path: Path, h5mu_protein: Path) -> None:
    prep = _prepared(h5mu_protein, tmp_path, "protein", masked=1.0, cross=0.0, contrastive=0.0)
    obj = prep.objective.eval()
    rows = prep.data.eval
    idx = np.arange(len(rows))
    t = obj.collate(rows[idx], idx, honest=True, seed=3).tensors
    with torch.no_grad():
        out = obj(**t, per_token=True)
    sel = t["m_t_role"] == 1  # rna targets
    feat, lab = t["m_t_feat"][sel], t["m_t_label"][sel]
    assert bool((lab >= 1).all())  # a masked RNA token is detected
    p = obj.stat_rna_prior.exp()[feat]  # [n, bins]
    want = -torch.log(p[torch.arange(len(lab)), lab] / (1 - p[:, 0]))
    torch.testing.assert_close(out["baseline/per_feature"][sel], want, rtol=1e-4, atol=1e-5)


def test_contrastive_alone_is_judged_against_chance(tmp_path: Path, h5mu_protein: Path) -> None:
    prep = _prepared(h5mu_protein, tmp_path, "protein", masked=0.0, cross=0.0, contrastive=1.0)
    obj = prep.objective.eval()
    idx = np.arange(8)
    with torch.no_grad():
        out = obj(**obj.collate(prep.data.eval[idx % len(prep.data.eval)], idx, honest=True, seed=0).tensors,
                  per_token=True)
    assert obj.reference == "chance" and len(out["loss"]) == 16
    torch.testing.assert_close(out["baseline/chance"], torch.full((16,), math.log(8)))


def test_queries_do_not_see_each_other(tmp_path: Path, h5mu_atac: Path) -> None:
    """Changing which other features are queried leaves a query's prediction unchanged (and the context's)."""
    from biofm.multiome.objectives import encode
    from biofm.multiome.tokenize import Seq, pack

    prep = _prepared(h5mu_atac, tmp_path, "atac")
    obj = prep.objective.eval()
    v = obj.vocab
    for p in obj.model.parameters():  # non-trivial weights everywhere
        torch.nn.init.normal_(p, std=0.2)

    def run(queries: np.ndarray) -> torch.Tensor:
        s = Seq.start(v.cls_id)
        s.add(v, "rna", np.array([0, 3, 5]), np.array([2, 3, 4]))
        s.add(v, "atac", queries, np.full(len(queries), v.hidden_code), query=True, labels=np.zeros(len(queries)))
        t = pack([s], v.pad_id)
        with torch.no_grad():
            return encode(obj.model, obj.value_embedding, t["input_ids"], t["token_type_ids"], t["value_ids"],
                          t["context"]).last_hidden_state[0]

    a, b = run(np.array([1, 2, 7])), run(np.array([1, 9, 20, 25]))
    torch.testing.assert_close(a[:5], b[:5])  # <cls>, 3 RNA tokens and the first query: same in both
    assert not torch.allclose(a[5], b[5])  # a different query is a different prediction


@pytest.mark.parametrize("second", ["protein", "atac"])
def test_every_objective_learns_an_easy_signal(second: str, tmp_path: Path, h5mu_protein: Path,
                                               h5mu_atac: Path) -> None:
    torch.manual_seed(0)
    prep = _prepared(h5mu_protein if second == "protein" else h5mu_atac, tmp_path, second)
    obj = prep.objective
    opt = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=2e-3)
    rows = prep.data.train
    for step in range(60):
        idx = np.random.default_rng(step).choice(len(rows), 16, replace=False)
        b = obj.train().collate(rows[idx], idx, honest=False, seed=0)
        out = obj(**b.tensors)
        loss = sum(out[k] / max(b.counts[k], 1) * w for k, w in obj.components.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
    obj.eval()
    idx = np.arange(len(prep.data.eval))
    t = obj.collate(prep.data.eval[idx], idx + 1000, honest=True, seed=1).tensors
    for main in ("cross", "masked", "contrastive"):
        obj.main = main
        obj.reference = "chance" if main == "contrastive" else "per_feature"
        with torch.no_grad():
            out = obj(**t, per_token=True)
        base = out[f"baseline/{obj.reference}"].mean()
        assert out["loss"].mean() < base - 0.02, (main, float(out["loss"].mean()), float(base))
