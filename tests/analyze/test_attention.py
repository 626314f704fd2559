"""Attention shares by class: they sum to 1 per layer and head, a class covering every token has
enrichment 1, and the shares match a direct computation from the model's attention weights."""

import numpy as np
import pytest
import torch

from biofm.analyze.attention import attention_enrichment, highlights, token_classes
from biofm.dna.tokenizer import KmerTokenizer
from biofm.models.load import load_for_embedding


@pytest.fixture(scope="module")
def eager(tiny_model):
    return load_for_embedding(tiny_model, attn_implementation="eager")


def _regions(lengths, seed=0):
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), n)) for n in lengths]
    codes = [rng.integers(0, 4, n) for n in lengths]
    return seqs, codes


def test_shares_sum_to_one_and_an_absent_class_has_no_enrichment(eager):
    model, tok = eager
    seqs, codes = _regions([30, 63, 45])  # unequal lengths: padding must not count
    res = attention_enrichment(model, tok, seqs, codes, 5, batch_size=2)
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    assert res["mass_share"].shape == (layers, heads, 5)
    np.testing.assert_allclose(res["mass_share"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(res["token_share"].sum(), 1.0)
    assert res["n_tokens"] == 138 and np.isnan(res["enrichment"][..., 4]).all()
    assert ((res["sink_share"] > 0) & (res["sink_share"] < 1)).all()


def test_a_class_covering_every_token_has_enrichment_one(eager):
    model, tok = eager
    seqs, _ = _regions([40, 25])
    res = attention_enrichment(model, tok, seqs, [np.full(40, 2), np.full(25, 2)], 3)
    np.testing.assert_allclose(res["enrichment"][..., 2], 1.0, atol=1e-6)
    assert np.isnan(res["enrichment"][..., 0]).all()


def test_shares_equal_a_direct_computation(eager):
    model, tok = eager
    seqs, codes = _regions([50], seed=3)
    res = attention_enrichment(model, tok, seqs, codes, 4)
    ids = torch.tensor([[tok.cls_token_id, *tok(seqs[0], add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        att = model.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True).attentions
    for layer, a in enumerate(att):
        w = a[0, :, 1:, 1:].double().numpy()  # real queries x real keys: [heads, 50, 50]
        w = w / w.sum(-1, keepdims=True)
        for c in range(4):
            direct = w[:, :, codes[0] == c].sum(-1).mean(-1)  # per head: mean over queries of the class's mass
            np.testing.assert_allclose(res["mass_share"][layer, :, c], direct, rtol=1e-5)
            np.testing.assert_allclose(res["token_share"][c], (codes[0] == c).mean())
    top = highlights(res, ["a", "b", "c", "d"], top=3)
    assert len(top) == 3 and top[0]["enrichment"] >= top[1]["enrichment"] >= top[2]["enrichment"]


def test_kmer_tokens_take_their_middle_base_class(tmp_path):
    KmerTokenizer(3).save(tmp_path)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path)
    codes = np.arange(10)  # base i has class i
    ids, token_codes = token_classes(tok, "AAACCCGGGT", codes, limit=100)
    assert len(ids) == 4 and token_codes.tolist() == [1, 4, 7, 9]  # AAA CCC GGG T
    assert token_classes(tok, "AAACCCGGGT", codes, limit=2)[1].tolist() == [1, 4]
