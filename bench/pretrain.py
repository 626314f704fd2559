"""Pretraining throughput: biofm's training step against the standard Hugging Face recipe.

    python bench/pretrain.py [--shape tiny|small|both] [--rounds 3] [--ceiling] [--ablation]
                             [--archs esm bert modernbert] [--json]

Both sides train the *same* transformers class and shape (ModernBERT, the `tiny` preset and the
4-layer, hidden 256, 8-head, FFN 1024 `small` preset), built from the same config with the same
initial weights, with AdamW at the same settings, the same batch of sequences and fp32, in one
process. The ratio therefore measures the pipeline, not a change of architecture:

* Hugging Face: `transformers.Trainer` + `DataCollatorForLanguageModeling` (15% masking, dynamic
  padding to the longest sequence of each batch), `optim="adamw_torch"`, no evaluation or saving;
  the loss is computed over the full [B, L, V] logits as `*ForMaskedLM` does.
* biofm: `biofm.train.loop.Trainer.train_step` on its memory-mapped block layout: sequences packed
  end to end into full blocks (no padding tokens), logits and the last encoder layer's queries,
  attention and feed-forward only at masked positions (`train.sparse_top`; same model and result,
  `--ablation` times it off), fused AdamW.

Two inputs of real DNA (shipped E. coli genome, NT's 6-mer tokens):
(a) fixed: 512-token windows; (b) variable: sequences of 64–512 tokens (uniform lengths).
Throughput is *useful* tokens per second: non-padding input tokens processed by training steps.
The first `--warmup` steps of each side are not timed; a side's figure is the median of its per-step
rates, and the sides alternate in `--rounds` rounds whose median ratio is reported.
With `--json` the last line is one JSON object
with `fixed_ratio` and `variable_ratio` (biofm / Hugging Face, for the `--shape` given, or `small` when
both are run), `mfu_cpu` (biofm's achieved training FLOP/s on fixed blocks of that shape, 6N + 12 x
layers x hidden x 512 per token, over this machine's fp32 peak: the best large GEMM timed in the same
run, `gemm_peak_gflops`) and the per-shape figures. `--quick` is a seconds-long smoke run.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds tokenize.py, which would shadow the stdlib module of that name: drop bench/ from the path.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if (str(Path(p).resolve()) if p else "") != _HERE]
sys.path.append(_HERE)  # after the stdlib: `_common` is found, bench/tokenize.py shadows nothing

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import _common  # noqa: E402
from biofm.datasets import dataset_path  # noqa: E402
from biofm.dna.fasta import read_fasta  # noqa: E402
from biofm.dna.tokenizer import KmerTokenizer  # noqa: E402
from biofm.models.presets import build_config, build_model  # noqa: E402
from biofm.train.config import TrainConfig  # noqa: E402
from biofm.train.loop import TrainData, Trainer  # noqa: E402
from biofm.train.masking import MaskSpec  # noqa: E402
from biofm.train.objectives import MaskedLMObjective  # noqa: E402

GENOME = "ecoli-k12"  # a registered dataset: fetched once, or read from $BIOFM_DATA_MIRROR
BLOCK = 512


def sequences(tok: KmerTokenizer, n: int, lengths: np.ndarray) -> list[np.ndarray]:
    """`n` token sequences (<cls> + k-mers) of the given token lengths, cut from the genome in order."""
    genome = next(iter(read_fasta(dataset_path(GENOME)))).seq
    out, pos = [], 0
    for length in lengths[:n]:
        bp = (int(length) - 1) * tok.k
        if pos + bp > len(genome):
            pos = 0
        ids = tok.encode(genome[pos:pos + bp])
        out.append(np.concatenate([[tok.cls_id], ids]).astype(np.int64))
        pos += bp
    return out


def pack(seqs: list[np.ndarray], block: int) -> np.ndarray:
    """Concatenate sequences and cut into full blocks (biofm's layout: no padding tokens)."""
    flat = np.concatenate(seqs)
    n = len(flat) // block
    return flat[: n * block].reshape(n, block)


def make_model(shape: str, tok: KmerTokenizer, arch: str | None = None):
    cfg = build_config(shape, vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=BLOCK, arch=arch)
    return build_model(cfg, seed=0)


def run_hf(shape: str, tok: KmerTokenizer, seqs: list[np.ndarray], batch: int, steps: int, warmup: int) -> float:
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    hf_tok = tok.to_hf()
    ds = Dataset.from_dict({"input_ids": [s.tolist() for s in seqs[: batch * (steps + warmup)]]})
    times: list[float] = []
    useful: list[int] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            times.append(time.perf_counter())

    class CountingCollator(DataCollatorForLanguageModeling):
        def __call__(self, examples, return_tensors=None):
            useful.append(sum(len(e["input_ids"]) for e in examples))
            return super().__call__(examples, return_tensors)

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, max_steps=steps + warmup, learning_rate=1e-4,
            weight_decay=0.01, optim="adamw_torch", lr_scheduler_type="constant", logging_strategy="no",
            save_strategy="no", eval_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0, disable_tqdm=True, seed=0, data_seed=0, max_grad_norm=1.0,
        )
        trainer = Trainer(model=make_model(shape, tok), args=args, train_dataset=ds,
                          data_collator=CountingCollator(hf_tok, mlm_probability=0.15), callbacks=[Clock()])
        trainer.train()
        end = time.perf_counter()
    times.append(end)
    # the collator runs just before each step begins; tokens of timed steps only
    durations = np.diff(times)[warmup: warmup + steps]
    return rate(np.asarray(useful[warmup: warmup + steps], dtype=np.float64), durations)


def run_biofm(shape: str, tok: KmerTokenizer, seqs: list[np.ndarray], batch: int, steps: int, warmup: int,
              arch: str | None = None, sparse_top: bool = True) -> float:
    blocks = pack(seqs, BLOCK)
    special = np.asarray(sorted(tok.special_ids))
    real = np.setdiff1d(np.arange(tok.vocab_size), special)
    mask = MaskSpec(mask_id=tok.mask_id, special_ids=tuple(int(i) for i in special), random_ids=real, prob=0.15)
    logp = np.zeros(tok.vocab_size)
    objective = MaskedLMObjective(make_model(shape, tok, arch), mask, tok.pad_id, logp)
    cfg = TrainConfig(steps=steps + warmup, global_batch_tokens=batch * BLOCK, micro_batch_size=batch, lr=1e-4,
                      schedule="constant", warmup_steps=0, log_every=10**6, eval_every=10**6,
                      checkpoint_every=10**6, sparse_top=sparse_top)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(objective, cfg, TrainData(train=blocks, eval=blocks[:1], seq_len=BLOCK), out,
                          progress=False)
        for _ in range(warmup):
            trainer.train_step()
        tokens, durations = [], []
        for _ in range(steps):
            t0 = time.perf_counter()
            tokens.append(trainer.train_step()["tokens"])
            durations.append(time.perf_counter() - t0)
        return rate(np.asarray(tokens, dtype=np.float64), np.asarray(durations))


def run_encoder_only(shape: str, tok: KmerTokenizer, seqs: list[np.ndarray], batch: int, steps: int,
                     warmup: int) -> float:
    """The bare encoder: forward, a trivial loss on 15% of the hidden states, backward, fused AdamW.
    No head, no masking, no data pipeline: the most a pipeline that runs every layer at every
    position can reach on this model."""
    model = make_model(shape, tok)
    encoder = model.base_model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    x = torch.from_numpy(pack(seqs, BLOCK)[:batch]).long()
    picked = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.15
    tokens, durations = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = encoder(input_ids=x).last_hidden_state[picked].pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            tokens.append(x.numel())
            durations.append(time.perf_counter() - t0)
    return rate(np.asarray(tokens, dtype=np.float64), np.asarray(durations))


def rate(tokens: np.ndarray, seconds: np.ndarray) -> float:
    """Useful tokens/s from per-step figures: the median of the per-step rates. On a shared 2-core
    machine single steps stall now and then; the median ignores those, the same way on both sides."""
    return float(np.median(tokens / seconds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=["tiny", "small", "both"], default="both")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per side and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of both sides")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--archs", nargs="*", default=[], metavar="ARCH",
                    help="also time biofm's step on the same shape in other transformers classes (esm, bert, "
                         "modernbert), fixed 512-token blocks: the architecture's own cost, reported apart")
    ap.add_argument("--ceiling", action="store_true",
                    help="also time the bare encoder (fixed 512, in the same rounds as both sides): full forward "
                         "and backward, no head, loss or data pipeline; the ceiling of any pipeline that runs "
                         "the whole encoder at every position")
    ap.add_argument("--ablation", action="store_true",
                    help="also time biofm with the full last layer (train.sparse_top=false) in the same rounds")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny shape, one round of two steps")
    args = ap.parse_args()
    if args.quick:
        args.shape, args.rounds, args.steps, args.warmup, args.batch = "tiny", 1, 2, 1, 2
    torch.manual_seed(0)
    peaks = [_common.gemm_peak_flops()]
    tok = KmerTokenizer(args.k)
    n = args.batch * (args.steps + args.warmup)
    rng = np.random.default_rng(0)
    fixed = sequences(tok, n, np.full(n, BLOCK))
    # variable lengths: HF pads each batch to its longest; biofm packs the same tokens into full blocks,
    # so it needs fewer (full) blocks for the same number of steps -> draw enough sequences for both sides
    var_lengths = rng.integers(64, BLOCK + 1, size=4 * n)
    variable = sequences(tok, 4 * n, var_lengths)
    shapes = ["tiny", "small"] if args.shape == "both" else [args.shape]
    results: dict[str, dict[str, Any]] = {}
    for shape in shapes:
        r: dict[str, Any] = {}
        for name, seqs in (("fixed", fixed), ("variable", variable)):
            # alternate the sides in rounds: a slow spell of a shared machine then hits both, and the
            # median of the per-round ratios is reported
            rounds, bare, dense_top = [], [], []
            for _ in range(args.rounds):
                rounds.append((run_hf(shape, tok, seqs, args.batch, args.steps, args.warmup),
                               run_biofm(shape, tok, seqs, args.batch, args.steps, args.warmup)))
                if args.ceiling and name == "fixed":
                    bare.append(run_encoder_only(shape, tok, seqs, args.batch, args.steps, args.warmup))
                peaks.append(_common.gemm_peak_flops())
                if args.ablation:
                    dense_top.append(run_biofm(shape, tok, seqs, args.batch, args.steps, args.warmup,
                                               sparse_top=False))
            hf = float(np.median([h for h, _ in rounds]))
            ours = float(np.median([b for _, b in rounds]))
            ratio = float(np.median([b / h for h, b in rounds]))
            r[f"{name}_hf_tokens_per_s"], r[f"{name}_biofm_tokens_per_s"] = hf, ours
            r[f"{name}_ratio"] = ratio
            r[f"{name}_round_ratios"] = [b / h for h, b in rounds]
            if dense_top:
                r[f"{name}_biofm_full_last_layer_tokens_per_s"] = float(np.median(dense_top))
                r[f"{name}_full_last_layer_ratio"] = float(
                    np.median([d / h for d, (h, _) in zip(dense_top, rounds, strict=True)]))
                print(f"[{shape}] {name:8s}: biofm with the full last layer {np.median(dense_top):8,.0f} tokens/s; "
                      f"ratio {r[f'{name}_full_last_layer_ratio']:.2f}x", flush=True)
            if bare:
                r["encoder_only_tokens_per_s"] = float(np.median(bare))
                r["ceiling_ratio"] = float(np.median([e / h for e, (h, _) in zip(bare, rounds, strict=True)]))
                print(f"[{shape}] bare encoder (no head, loss or data pipeline): {r['encoder_only_tokens_per_s']:,.0f} "
                      f"tokens/s; ceiling ratio vs Hugging Face {r['ceiling_ratio']:.2f}x", flush=True)
            print(f"[{shape}] {name:8s}: Hugging Face Trainer {hf:8,.0f} useful tokens/s   biofm {ours:8,.0f}   "
                  f"ratio {ratio:.2f}x (rounds: {', '.join(f'{b / h:.2f}' for h, b in rounds)})", flush=True)
        results[shape] = r
    arch_rates: dict[str, float] = {}
    for arch in args.archs:
        shape = "small" if "small" in shapes else shapes[0]
        arch_rates[arch] = run_biofm(shape, tok, fixed, args.batch, args.steps, args.warmup, arch)
        print(f"[{shape}] architecture {arch:10s}: biofm {arch_rates[arch]:8,.0f} tokens/s (fixed 512)", flush=True)
    head_shape = "small" if "small" in results else shapes[0]
    head = results[head_shape]
    peak = max(peaks)
    mfu = _common.training_flops_per_token(make_model(head_shape, tok), BLOCK) * head["fixed_biofm_tokens_per_s"] / peak
    print(f"[{head_shape}] biofm on fixed blocks at {mfu:.1%} of the {peak / 1e9:,.0f} GFLOP/s fp32 GEMM peak",
          flush=True)
    summary = {"fixed_ratio": head["fixed_ratio"], "variable_ratio": head["variable_ratio"], "mfu_cpu": mfu,
               "gemm_peak_gflops": peak / 1e9, "mfu_shape": head_shape, "shapes": results,
               "architectures_tokens_per_s": arch_rates,
               "batch": args.batch, "block": BLOCK, "k": args.k, "steps": args.steps,
               "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
