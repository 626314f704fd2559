"""The likelihood track equals a direct computation, one position (or one prefix) at a time."""

import numpy as np
import torch
from torch.nn import functional as F

from biofm.analyze.likelihood import context_start, likelihood_track, real_token_ids
from biofm.models.load import load_for_embedding


def _genome(n, seed=0):
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


def test_masked_track_equals_hiding_one_position_at_a_time(tiny_model):
    model, tok = load_for_embedding(tiny_model)
    seq = _genome(150)  # longer than the 63-token context: windows shift inward at both ends
    track = likelihood_track(model, tok, seq, 0, 150, batch_size=7)  # 7: batches end mid-region
    ids = tok(seq, add_special_tokens=False)["input_ids"]
    real = real_token_ids(tok)
    width = model.config.max_position_embeddings - 1
    direct = []
    with torch.no_grad():
        for j in range(150):
            s = context_start(j, 150, width)
            row = [tok.cls_token_id, *ids[s:s + width]]
            row[j - s + 1] = tok.mask_token_id
            logits = model(input_ids=torch.tensor([row])).logits[0, j - s + 1]
            logp = F.log_softmax(logits[real], dim=-1)
            direct.append(float(logp[real.tolist().index(ids[j])]))
    np.testing.assert_allclose(track["loglik"], direct, atol=1e-4)
    assert track["token_start"].tolist() == list(range(150)) and track["token_end"].tolist() == list(range(1, 151))
    assert track["positions_per_s"] > 0 and track["kind"].startswith("masked")
    assert context_start(0, 150, width) == 0 and context_start(149, 150, width) == 150 - width


def test_a_subregion_is_scored_with_context_from_outside_it(tiny_model):
    model, tok = load_for_embedding(tiny_model)
    seq = _genome(150, seed=1)
    whole = likelihood_track(model, tok, seq, 0, 150)
    part = likelihood_track(model, tok, seq, 40, 60)
    np.testing.assert_allclose(part["loglik"], whole["loglik"][40:60], atol=1e-5)


def test_causal_track_is_the_next_token_log_likelihood(tmp_path, make_model):
    model, tok = load_for_embedding(make_model(tmp_path / "gpt", preset="gpt2-tiny", max_len=32))
    seq = _genome(50, seed=2)
    track = likelihood_track(model, tok, seq, 10, 45, batch_size=8)
    ids = tok(seq, add_special_tokens=False)["input_ids"]
    real = real_token_ids(tok)
    ctx, step = 15, 16  # half of the 31 tokens after <eos> is left context; chunks of the rest
    direct = []
    with torch.no_grad():
        for c0 in range(10, 45, step):
            first = max(0, c0 - ctx)
            for j in range(c0, min(c0 + step, 45)):
                logits = model(input_ids=torch.tensor([[tok.eos_token_id, *ids[first:j]]])).logits[0, -1]
                direct.append(float(F.log_softmax(logits[real], dim=-1)[real.tolist().index(ids[j])]))
    np.testing.assert_allclose(track["loglik"], direct, atol=1e-4)
    assert track["kind"].startswith("causal")
