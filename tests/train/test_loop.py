"""The trainer's numerics: global-batch normalisation, exact resume, honest eval, NaN stop."""

import json

import numpy as np
import pytest
import torch

from biofm.models.presets import Preset, build_config, build_model
from biofm.train.config import TrainConfig
from biofm.train.loop import TrainData, Trainer, TrainingDiverged
from biofm.train.masking import MaskSpec
from biofm.train.objectives import MaskedLMObjective

VOCAB = 12  # 0 unk 1 pad 2 mask 3 cls 4 eos, 5..11 real
PRESET = Preset("test", "modernbert", layers=1, hidden=32, heads=2, ffn=64, max_len=64)


def _blocks(n, length=32, seed=0):
    """Sequences with context: each token is the previous one + 1 (mod 7), from a random start."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, 7, size=(n, 1))
    ids = 5 + (start + np.arange(length - 1)) % 7
    ids = np.concatenate([np.full((n, 1), 3), ids], axis=1)
    ids[: n // 4, -5:] = 1  # some padding
    return ids.astype(np.int16)


def _objective(model):
    real = np.arange(5, VOCAB)
    logp = np.full(VOCAB, -30.0)
    logp[real] = np.log(1 / len(real))
    mask = MaskSpec(mask_id=2, special_ids=(0, 1, 2, 3, 4), random_ids=real)
    return MaskedLMObjective(model, mask, pad_id=1, unigram_logp=logp, token_units=np.ones(VOCAB), unit_name="base")


def _data():
    return TrainData(train=_blocks(64), eval=_blocks(16, seed=1), seq_len=32)


def _trainer(tmp_path, **overrides):
    base = dict(steps=6, global_batch_tokens=8 * 32, micro_batch_size=8, lr=3e-3, warmup_steps=2,
                log_every=1, eval_every=3, checkpoint_every=3, keep_checkpoints=3, schedule="cosine")
    cfg = TrainConfig(**{**base, **overrides})
    model = build_model(build_config(PRESET, vocab_size=VOCAB, pad_id=1, mask_id=2, cls_id=3, eos_id=4), seed=0)
    return Trainer(_objective(model), cfg, _data(), tmp_path, seed=0, progress=False)


def _rows(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def test_accumulation_matches_one_big_batch(tmp_path):
    big = _trainer(tmp_path / "big", micro_batch_size=8)
    small = _trainer(tmp_path / "small", micro_batch_size=2)
    assert big.layout.accum == 1 and small.layout.accum == 4
    big.fit()
    small.fit()
    a, b = _rows(tmp_path / "big"), _rows(tmp_path / "small")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
    pa = dict(big.model.named_parameters())
    for name, p in small.model.named_parameters():
        torch.testing.assert_close(p, pa[name], rtol=1e-4, atol=1e-5)


def test_loss_normalised_by_global_target_count_not_mean_of_micro_means(tmp_path):
    """Micro-batches with very different numbers of targets: a mean of means would differ."""
    t = _trainer(tmp_path, micro_batch_size=2)
    out = t.train_step()
    # the same 8 samples in one pass: the loss must be identical
    t2 = _trainer(tmp_path / "b", micro_batch_size=8)
    out2 = t2.train_step()
    assert out["counts"] == out2["counts"]
    loss, loss2 = t.weighted_loss(out["sums"], out["counts"])[0], t2.weighted_loss(out2["sums"], out2["counts"])[0]
    assert loss == pytest.approx(loss2, rel=1e-5)


def test_resume_reproduces_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = _trainer(tmp_path / "a")
    straight.fit()
    broken = _trainer(tmp_path / "b")
    original = Trainer.train_step

    def crash_after_4(self):
        if self.state.step == 4:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash_after_4)
    with pytest.raises(KeyboardInterrupt):
        broken.fit()
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = _trainer(tmp_path / "b")
    resumed.resume_latest()
    resumed.fit(resumed=True)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    assert [r.get("eval_loss") for r in a if "eval_loss" in r] == pytest.approx(
        [r.get("eval_loss") for r in b if "eval_loss" in r], rel=1e-5)


def test_checkpoints_are_complete_and_pruned(tmp_path):
    t = _trainer(tmp_path, keep_checkpoints=1)
    t.fit()
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["step-6"]
    for f in ["model/model.safetensors", "model/config.json", "optimizer.bin", "rng-0.pt", "trainer_state.json"]:
        assert (tmp_path / "checkpoints" / "step-6" / f).exists()
    assert json.loads((tmp_path / "checkpoints/step-6/trainer_state.json").read_text())["samples_seen"] == 48


def test_model_learns_context_and_beats_unigram(tmp_path):
    t = _trainer(tmp_path, steps=60, eval_every=30, checkpoint_every=100, lr=1e-2, warmup_steps=5)
    summary = t.fit()
    assert summary["final_eval_loss"] < summary["baseline_unigram"] - 0.1
    assert summary["baseline_unigram"] == pytest.approx(np.log(7), rel=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    t = _trainer(tmp_path, steps=6, checkpoint_every=3)
    original = Trainer.train_step

    def poisoned(self):
        out = original(self)
        if self.state.step >= 5:
            out["sums"] = out["sums"] * float("nan")
        return out

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="step 5"):
        t.fit()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-3"]


def test_sparse_last_layer_trains_like_the_full_layer(tmp_path):
    sparse = _trainer(tmp_path / "sparse", sparse_top=True)
    full = _trainer(tmp_path / "full", sparse_top=False)
    assert sparse.unwrapped.sparse_top and not full.unwrapped.sparse_top
    sparse.fit()
    full.fit()
    a, b = _rows(tmp_path / "sparse"), _rows(tmp_path / "full")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
    evals = [[r["eval_loss"] for r in rows if "eval_loss" in r] for rows in (a, b)]
    assert evals[0] and evals[0] == pytest.approx(evals[1], rel=1e-5)


def test_fsdp_is_detected_as_sharding_layers():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from biofm.train.loop import _is_fsdp

    assert _is_fsdp(SimpleNamespace(distributed_type=DistributedType.FSDP))
    assert not _is_fsdp(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU))
    assert not _is_fsdp(SimpleNamespace(distributed_type=DistributedType.NO))


@pytest.mark.parametrize("arch", ["modernbert", "esm", "bert", "gpt2", "llama"])
def test_flops_per_token_is_what_a_full_training_pass_counts(arch):
    """The standard 6N + attention count equals torch's FLOP counter on a full forward + backward
    (every position through the model and head, eager attention so its matmuls are counted)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from biofm.models.presets import is_causal
    from biofm.train.loop import _flops_per_token

    cfg = build_config(Preset("t", arch, layers=2, hidden=64, heads=4, ffn=128, max_len=64), vocab_size=40,
                       pad_id=1, mask_id=2, cls_id=3, eos_id=4)
    auto = AutoModelForCausalLM if is_causal(cfg) else AutoModelForMaskedLM
    model = auto.from_config(cfg, attn_implementation="eager")
    ids = torch.randint(5, 40, (2, 64))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids).logits.sum().backward()
    assert _flops_per_token(model, 64) == pytest.approx(counter.get_total_flops() / ids.numel(), rel=1e-3)


def test_a_global_batch_below_one_block_is_said(tmp_path, capsys):
    t = _trainer(tmp_path, global_batch_tokens=10)  # blocks are 32 tokens
    assert t.layout.global_seqs == 1
    assert "train.global_batch_tokens=10 is below one block of 32 tokens; each step uses 1 block" in \
        capsys.readouterr().err
    _trainer(tmp_path / "b", global_batch_tokens=64)
    assert "below one block" not in capsys.readouterr().err
