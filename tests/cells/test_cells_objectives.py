"""The per-gene prior: an untrained value head scores exactly each gene's own context-free baseline."""

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from biofm.cells.objectives import CellObjective

V, K, SPECIAL, CLS = 30, 6, 5, 2  # vocabulary (5 specials), value bins, <cls> id


def _stats(rng):
    gene_p = rng.dirichlet(np.ones(K), size=V)
    return {
        "unigram_logp": np.log(gene_p.mean(0)),
        "gene_logp": np.log(gene_p),
        "global_mean_log1p": np.asarray(1.0),
        "gene_mean_log1p": rng.uniform(0, 3, V),
        "gene_nb_mean": rng.uniform(0.1, 20, V),
        "gene_nb_theta": rng.uniform(0.5, 50, V),
        "gene_unigram_logp": np.full(V, -np.log(V)),
    }


def _objective(name, gene_prior, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16, type_vocab_size=K + 2)
    return CellObjective(BertForMaskedLM(cfg), mode="gene_value", weights={name: 1.0}, n_bins=K, mask_prob=0.5,
                         stats=_stats(rng), gene_ids=np.arange(SPECIAL, V), special_ids=tuple(range(SPECIAL)),
                         mask_id=1, pad_id=0, gene_prior=gene_prior)


def _batch(obj, seed=0):
    rng = np.random.default_rng(seed)
    b, length = 8, 12
    genes = np.stack([np.sort(rng.choice(np.arange(SPECIAL, V), length, replace=False)) for _ in range(b)])
    counts = rng.poisson(3.0, (b, length))
    values = np.minimum(counts, K - 1)
    genes[:, 0], values[:, 0], counts[:, 0] = CLS, -1, 0  # <cls> leads every cell, as stored
    rows = {"gene_ids": genes, "values": values, "counts": counts}
    batch = obj.collate(rows, np.arange(b), honest=True, seed=0)
    assert batch.counts[obj.main] > 10
    return batch.tensors


@pytest.mark.parametrize(("name", "baseline", "tol"), [
    ("value_ce", "per_gene", 1e-5), ("value_ordinal", "per_gene", 2e-3),
    ("value_mse", "per_gene_mean", 1e-5), ("value_nb", "per_gene_nb", 1e-4)])
def test_untrained_head_with_gene_prior_is_the_per_gene_baseline(name, baseline, tol):
    obj = _objective(name, gene_prior=True)
    with torch.no_grad():
        out = obj(**_batch(obj), per_token=True)
    assert out["loss"].numpy() == pytest.approx(out[f"baseline/{baseline}"].numpy(), abs=tol)


def test_without_gene_prior_the_untrained_head_is_not_the_baseline():
    obj = _objective("value_ce", gene_prior=False)
    with torch.no_grad():
        out = obj(**_batch(obj), per_token=True)
    assert float((out["loss"] - out["baseline/per_gene"]).abs().mean()) > 0.05


def test_gene_prior_is_trained_and_saved_with_the_heads(tmp_path):
    obj = _objective("value_ordinal", gene_prior=True)
    tensors = _batch(obj)
    before = obj.priors["value_ordinal"].weight.detach().clone()
    opt = torch.optim.SGD(obj.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        obj(**tensors)["value_ordinal"].backward()
        opt.step()
    assert not torch.equal(before, obj.priors["value_ordinal"].weight)
    obj.save_pretrained(tmp_path)
    fresh = _objective("value_ordinal", gene_prior=True, seed=1)
    fresh.load_weights(tmp_path)
    assert torch.equal(fresh.priors["value_ordinal"].weight, obj.priors["value_ordinal"].weight)


def test_padding_columns_are_cut_and_masks_do_not_depend_on_the_batch():
    obj = _objective("value_ce", gene_prior=True)
    rng = np.random.default_rng(3)
    width = 20
    genes = np.zeros((3, width), dtype=np.int64)  # pad_id 0
    for row, n in enumerate((5, 9, 4)):
        genes[row, :n] = np.sort(rng.choice(np.arange(SPECIAL, V), n, replace=False))
    counts = rng.poisson(3.0, (3, width)) * (genes > 0)
    rows = {"gene_ids": genes, "values": np.where(genes > 0, np.minimum(counts, K - 1), -1), "counts": counts}
    both = obj.collate(rows, np.array([10, 11, 12]), honest=False, seed=4).tensors
    assert both["input_ids"].shape == (3, 9)  # the longest cell, not the stored width
    alone = obj.collate({k: v[:1] for k, v in rows.items()}, np.array([10]), honest=False, seed=4).tensors
    assert alone["input_ids"].shape == (1, 5)
    assert torch.equal(alone["token_type_ids"][0], both["token_type_ids"][0, :5])
    k = len(alone["target_flat"])
    assert torch.equal(alone["target_query"][0, :k], both["target_query"][0, :k])
    assert k == int((both["target_flat"] < both["input_ids"].shape[1]).sum())  # row 0's targets


def test_contrastive_views_are_disjoint_halves_and_packing_them_changes_nothing():
    obj = _objective("value_ce", gene_prior=True)
    obj.components["contrastive"] = 0.5
    obj.heads["contrastive"] = torch.nn.Linear(32, 16)
    with torch.no_grad():
        obj.model.bert.embeddings.position_embeddings.weight.zero_()
    t = _batch(obj)
    ids, types = t["view_ids"], t["view_types"]
    b = t["input_ids"].shape[0]
    assert ids.shape[0] == 2 * b and (ids[:, 0] == CLS).all()  # <cls> leads both views
    for row in range(b):
        a, c = set(ids[row, 1:].tolist()) - {0}, set(ids[b + row, 1:].tolist()) - {0}
        assert a and not a & c and a | c <= set(t["input_ids"][row].tolist())
    obj.eval()
    with torch.no_grad():
        packed = obj._contrastive(ids, types)
        # the same views spread over twice the width with padding between the genes: a cell is a set
        spread_ids = torch.zeros((2 * b, 2 * ids.shape[1] - 1), dtype=ids.dtype)
        spread_types = torch.zeros_like(spread_ids)
        spread_ids[:, ::2], spread_types[:, ::2] = ids, types
        spread = obj._contrastive(spread_ids, spread_types)
    assert torch.allclose(packed, spread, atol=1e-5)


@pytest.mark.parametrize("name", ["value_ce", "value_nb", "gene_id"])
def test_last_layer_at_hidden_values_only_gives_the_full_models_loss_and_gradients(name):
    obj = _objective(name, gene_prior=True).eval()  # no dropout: its masks would differ in shape
    tensors = _batch(obj)
    results = []
    for sparse in (True, False):
        obj.sparse_top = sparse
        obj.zero_grad()
        loss = obj(**tensors)[name]
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in obj.parameters() if p.grad is not None]))
    (a, grads_a), (b, grads_b) = results
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert len(grads_a) == len(grads_b)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)
