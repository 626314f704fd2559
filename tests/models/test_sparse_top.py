"""The last layer computed at masked positions only must equal the stock forward pass there."""

import numpy as np
import pytest
import torch

from biofm.models.mlm import split_mlm
from biofm.models.presets import Preset, build_config, build_model
from biofm.models.sparse_top import hidden_at_targets, supports, target_index

VOCAB = 40


ARCHS = ["modernbert", "bert", "esm"]


def _model(arch="modernbert", layers=3, **overrides):
    preset = Preset("t", arch, layers=layers, hidden=32, heads=4, ffn=48, max_len=64)
    cfg = build_config(preset, vocab_size=VOCAB, pad_id=1, mask_id=2, cls_id=3, eos_id=4, overrides=overrides)
    return build_model(cfg, seed=0).train()


def _batch(padded=True, seed=0):
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(5, VOCAB, size=(4, 24)))
    if padded:
        ids[1, 17:] = 1
        ids[3, 5:] = 1
    attention = ids != 1
    selected = (rng.random(ids.shape) < 0.2) & attention.numpy()
    selected[2] = False  # a row without targets
    selected[0, 0] = True
    return ids, attention, selected


def _stock(model, ids, attention, selected):
    encoder, _ = split_mlm(model)
    hidden = encoder(input_ids=ids, attention_mask=attention).last_hidden_state
    return hidden[torch.from_numpy(selected)]


def _grads(model, out):
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * weights).sum(), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def test_target_index_numbers_targets_in_row_major_order():
    selected = np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)
    index = target_index(selected)
    assert index["flat"].tolist() == [1, 3, 8]  # b * 4 + position
    assert index["query"].tolist() == [[1, 3], [0, 0], [0, 0]]
    assert index["slot"].tolist() == [0, 1, 4]  # b * 2 + rank in row
    empty = target_index(np.zeros((2, 3), dtype=bool))
    assert empty["flat"].numel() == 0 and empty["query"].shape == (2, 1)


@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("arch", ARCHS)
def test_matches_the_stock_forward_and_gradients(arch, padded, layers):
    model = _model(arch, layers=layers)
    assert supports(model)
    ids, attention, selected = _batch(padded)
    encoder, _ = split_mlm(model)
    ref = _stock(model, ids, attention, selected)
    got = hidden_at_targets(model, encoder, ids, attention, target_index(selected), sparse=True)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(_grads(model, got), _grads(model, ref), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_no_targets_gives_an_empty_result():
    model = _model()
    ids, attention, _ = _batch()
    selected = np.zeros(ids.shape, dtype=bool)
    got = hidden_at_targets(model, split_mlm(model)[0], ids, attention, target_index(selected), sparse=True)
    assert got.shape == (0, 32)


@pytest.mark.parametrize("arch", ARCHS)
def test_under_bf16_autocast_it_stays_close_to_the_stock_forward(arch):
    model = _model(arch)
    ids, attention, selected = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _stock(model, ids, attention, selected)
        got = hidden_at_targets(model, split_mlm(model)[0], ids, attention, target_index(selected), sparse=True)
    torch.testing.assert_close(got.float(), ref.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("arch", ["esm", "bert"])
def test_other_variants_take_the_full_forward(arch):
    overrides = {"position_embedding_type": "rotary"} if arch == "esm" else {"is_decoder": True}
    model = _model(arch, **overrides)
    assert not supports(model)
    ids, attention, selected = _batch()
    got = hidden_at_targets(model, split_mlm(model)[0], ids, attention, target_index(selected), sparse=True)
    torch.testing.assert_close(got, _stock(model, ids, attention, selected))


def test_a_sliding_window_last_layer_takes_the_full_forward():
    model = _model(layer_types=["full_attention", "full_attention", "sliding_attention"], local_attention=8,
                   sliding_window=4)
    assert not supports(model)
    ids, attention, selected = _batch()
    got = hidden_at_targets(model, split_mlm(model)[0], ids, attention, target_index(selected), sparse=True)
    torch.testing.assert_close(got, _stock(model, ids, attention, selected))


def test_sliding_window_layers_below_the_last_are_kept():
    model = _model(layer_types=["sliding_attention", "full_attention", "full_attention"], local_attention=8,
                   sliding_window=4)
    assert supports(model)
    ids, attention, selected = _batch()
    got = hidden_at_targets(model, split_mlm(model)[0], ids, attention, target_index(selected), sparse=True)
    torch.testing.assert_close(got, _stock(model, ids, attention, selected), rtol=1e-5, atol=1e-5)
