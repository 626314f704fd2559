"""GPU model FLOPs utilisation of biofm's training step: the `100m` preset at 1,024 and 2,048 tokens, bf16.

    python bench/mfu.py [--preset 100m] [--seq 1024 2048] [--batch-tokens 65536] [--steps 20] [--compile]
                        [--full-last-layer] [--json]

MFU = training FLOPs per token x tokens/s / the GPU's dense bf16 peak (H100 SXM: 989 TFLOP/s), with
the standard count: 6N for the non-embedding weights plus 12 x layers x hidden x seq for attention
(the same `_flops_per_token` the trainer logs every step on GPU; N = the matmul weights, head
included). Every position of a block is counted through the whole model, as the standard formula
does, although biofm computes the head, and with `train.sparse_top` the last layer's queries,
output and feed-forward, only at the 15% masked positions. For the 100m preset that credits about
5% of the counted FLOPs that are not executed; `--full-last-layer` turns `sparse_top` off to show
the step without it. Input is random 6-mer token ids in full blocks
(packing leaves no padding, so the data do not change the arithmetic). Each timed step ends with a
device synchronisation; the median step is reported. On a machine without CUDA it exits with a
message unless `--allow-cpu` is given (a smoke run of the script itself, no MFU).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if (str(Path(p).resolve()) if p else "") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from biofm.dna.tokenizer import KmerTokenizer  # noqa: E402
from biofm.models.presets import build_config, build_model  # noqa: E402
from biofm.train.config import TrainConfig  # noqa: E402
from biofm.train.loop import TrainData, Trainer  # noqa: E402
from biofm.train.masking import MaskSpec  # noqa: E402
from biofm.train.objectives import MaskedLMObjective  # noqa: E402


def measure(preset: str, seq: int, batch_tokens: int, micro: int, steps: int, warmup: int, compile_: bool,
            precision: str, sparse_top: bool = True) -> dict[str, float | str | None]:
    tok = KmerTokenizer(6)
    special = np.asarray(sorted(tok.special_ids))
    real = np.setdiff1d(np.arange(tok.vocab_size), special)
    rng = np.random.default_rng(0)
    n_blocks = max(batch_tokens // seq, 1) * (steps + warmup)
    blocks = rng.choice(real, size=(n_blocks, seq)).astype(np.int32)
    blocks[:, 0] = tok.cls_id
    cfg = build_config(preset, vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id, cls_id=tok.cls_id,
                       eos_id=tok.eos_id, max_len=seq)
    model = build_model(cfg, seed=0)
    mask = MaskSpec(mask_id=tok.mask_id, special_ids=tuple(int(i) for i in special), random_ids=real, prob=0.15)
    objective = MaskedLMObjective(model, mask, tok.pad_id, np.zeros(tok.vocab_size))
    train = TrainConfig(steps=steps + warmup, global_batch_tokens=batch_tokens, micro_batch_size=micro, lr=1e-4,
                        schedule="constant", warmup_steps=0, log_every=10**6, eval_every=10**6,
                        checkpoint_every=10**6, precision=precision, compile=compile_,
                        sparse_top=sparse_top)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(objective, train, TrainData(train=blocks, eval=blocks[:1], seq_len=seq), out, progress=False)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        for _ in range(warmup):
            trainer.train_step()
        sync()
        rates = []
        for _ in range(steps):
            t0 = time.perf_counter()
            tokens = trainer.train_step()["tokens"]
            sync()
            rates.append(tokens / (time.perf_counter() - t0))
        tps = float(np.median(rates))
        peak = trainer.peak_flops
        return {
            "preset": preset, "seq": seq, "params": sum(p.numel() for p in model.parameters()),
            "tokens_per_s": tps, "flops_per_token": trainer.flops_per_token,
            "achieved_tflops": trainer.flops_per_token * tps / 1e12,
            "mfu": trainer.flops_per_token * tps / peak if peak else None,
            "device": torch.cuda.get_device_name() if trainer.device.type == "cuda" else "cpu",
            "micro_batch": trainer.layout.micro, "accumulation": trainer.layout.accum,
            "max_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if trainer.device.type == "cuda" else None,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="100m")
    ap.add_argument("--seq", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--batch-tokens", type=int, default=65536, help="global batch in tokens per step")
    ap.add_argument("--micro-batch", type=int, default=32, help="sequences per forward pass (at 1,024 tokens; "
                                                                 "halved at 2,048)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="torch.compile the training step")
    ap.add_argument("--full-last-layer", action="store_true", help="train.sparse_top=false")
    ap.add_argument("--allow-cpu", action="store_true", help="smoke-run on CPU in fp32 (no MFU)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit("bench/mfu.py: no CUDA device here; MFU is a GPU figure (use --allow-cpu for a smoke run)")
    precision = "bf16" if torch.cuda.is_available() else "fp32"
    results = []
    for seq in args.seq:
        micro = max(1, args.micro_batch * 1024 // seq)
        r = measure(args.preset, seq, args.batch_tokens, micro, args.steps, args.warmup, args.compile, precision,
                    sparse_top=not args.full_last_layer)
        results.append(r)
        mfu = f"MFU {100 * r['mfu']:.1f}%" if r["mfu"] is not None else "MFU n/a (no known bf16 peak)"
        print(f"[{r['preset']} seq {seq}] {r['tokens_per_s']:,.0f} tokens/s, {r['achieved_tflops']:.1f} TFLOP/s, "
              f"{mfu} on {r['device']} (micro-batch {r['micro_batch']} x {r['accumulation']})", flush=True)
    if args.json:
        print(json.dumps({"precision": precision, "compile": args.compile, "sparse_top": not args.full_last_layer,
                          "results": results}))


if __name__ == "__main__":
    main()
