"""The chunked, fused LM head + cross-entropy gives the unchunked loss and gradients."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from biofm.models.presets import build_config, build_model
from biofm.train.objectives import CausalLMObjective, chunked_linear_cross_entropy


def reference(hidden, weight, bias, targets, banned):
    """The plain head: [n, V] logits, banned columns at -inf, summed cross-entropy."""
    logits = F.linear(hidden, weight, bias).float()
    logits = logits.index_fill(1, banned, float("-inf"))
    return F.cross_entropy(logits, targets, reduction="none")


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_unchunked_loss_and_gradients(chunk, with_bias):
    g = torch.Generator().manual_seed(0)
    n, h, v = 50, 16, 97  # n not a multiple of the chunk: a short last chunk
    hidden = torch.randn(n, h, generator=g, requires_grad=True)
    weight = (torch.randn(v, h, generator=g) * 0.5).requires_grad_()
    bias = torch.randn(v, generator=g).requires_grad_() if with_bias else None
    banned = torch.tensor([0, 3, 95, 96])
    targets = torch.randint(4, 95, (n,), generator=g)
    params = [hidden, weight] + ([bias] if with_bias else [])

    ref_nll = reference(hidden, weight, bias, targets, banned)
    ref_grads = torch.autograd.grad(ref_nll.sum() * 0.37, params)
    total, nll = chunked_linear_cross_entropy(hidden, weight, bias, targets, banned, chunk)
    grads = torch.autograd.grad(total * 0.37, params)  # a non-unit incoming gradient scales all of them

    torch.testing.assert_close(nll, ref_nll.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(total, ref_nll.sum(), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert not nll.requires_grad  # per-row values are for reporting only


def test_extreme_logits_keep_a_finite_exact_loss():
    """A target whose probability underflows in fp32 (NLL in the hundreds) is scored from the logits."""
    weight = torch.zeros(5, 2)
    weight[0] = torch.tensor([400.0, 0.0])  # row 0 dominates everything
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([4, 4])
    _, nll = chunked_linear_cross_entropy(hidden, weight, None, targets, torch.tensor([], dtype=torch.long), 1)
    want = reference(hidden, weight, None, targets, torch.tensor([], dtype=torch.long))
    assert torch.isfinite(nll).all() and nll[0] > 399
    torch.testing.assert_close(nll, want, rtol=1e-6, atol=1e-4)


def test_no_gradient_work_without_grad():
    hidden, weight = torch.randn(6, 4), torch.randn(9, 4)
    with torch.no_grad():
        total, nll = chunked_linear_cross_entropy(hidden, weight, None, torch.arange(6), torch.tensor([8]), 4)
    torch.testing.assert_close(nll, reference(hidden, weight, None, torch.arange(6), torch.tensor([8])))
    assert not total.requires_grad


def _objective(vocab: int = 200) -> CausalLMObjective:
    cfg = build_config("gpt2-tiny", vocab_size=vocab, pad_id=1, mask_id=2, cls_id=3, eos_id=0, max_len=32)
    model = build_model(cfg, seed=0)
    targets = np.setdiff1d(np.arange(vocab), [1, 2, 3])  # the specials but <|endoftext|> are never predicted
    return CausalLMObjective(model, 1, targets, np.zeros(model.config.vocab_size))


def test_objective_matches_the_plain_head_path():
    """CausalLMObjective's fused path (sparse_top) and its module path (sharded engines) agree in loss,
    per-token NLL and every parameter's gradient, with padding in the batch and small chunks."""
    obj = _objective()
    obj.head_chunk_elements = 3 * obj.model.config.vocab_size  # 3 rows a chunk: many chunks
    rows = np.random.default_rng(0).integers(4, 200, size=(3, 20))
    rows[1, 15:] = 1  # a padded tail: no targets there
    batch = obj.collate(rows, np.arange(3), honest=False, seed=0).tensors
    results = []
    for fused in (True, False):
        obj.sparse_top = fused
        obj.zero_grad(set_to_none=True)
        out = obj(**batch)
        out["clm"].backward()
        grads = {n: p.grad.clone() for n, p in obj.named_parameters() if p.grad is not None}
        with torch.no_grad():
            per_token = obj(**batch, per_token=True)["loss"]
        results.append((out["clm"].detach(), grads, per_token))
    (loss_a, grads_a, tok_a), (loss_b, grads_b, tok_b) = results
    assert len(tok_a) == 19 + 14 + 19
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tok_a, tok_b, rtol=1e-5, atol=1e-5)
    assert grads_a.keys() == grads_b.keys() and "model.transformer.wte.weight" in grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("hidden_dtype", [torch.float32, torch.bfloat16])
def test_under_bf16_autocast_matches_the_autocast_head(hidden_dtype):
    """As on a GPU under bf16 autocast (here the CPU's): matmuls in bf16, sums in fp32, fp32 weight grads,
    whatever dtype the hidden states arrive in (GPT-2's LayerNorm gives fp32, Llama's RMSNorm bf16)."""
    g = torch.Generator().manual_seed(1)
    n, h, v = 40, 16, 64
    hidden = torch.randn(n, h, generator=g).to(hidden_dtype).requires_grad_()
    weight = (torch.randn(v, h, generator=g) * 0.5).requires_grad_()
    targets = torch.randint(2, v, (n,), generator=g)
    banned = torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = reference(hidden, weight, None, targets, banned)
        ref_grads = torch.autograd.grad(ref.sum(), [hidden, weight])
        total, _ = chunked_linear_cross_entropy(hidden, weight, None, targets, banned, 9)
        grads = torch.autograd.grad(total, [hidden, weight])
    torch.testing.assert_close(total, ref.sum(), rtol=2e-2, atol=1e-2)
    assert grads[0].dtype == hidden_dtype and grads[1].dtype == torch.float32
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.float(), want.float(), rtol=5e-2, atol=5e-2)
