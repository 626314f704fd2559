"""Text pretraining throughput and memory: biofm's causal-LM step against Hugging Face's `run_clm` recipe.

    python bench/text_clm.py [--rounds 3] [--steps 6] [--warmup 2] [--batch 8] [--block 256]
                             [--vocab 50257] [--threads N] [--quick] [--json]

Both sides train the same `GPT2LMHeadModel`: the `gpt2-tiny` preset (2 layers, hidden 128, 4 heads,
FFN 512) with GPT-2's vocabulary size (`--vocab` 50,257, padded to 50,304 rows), built from the same
config with the same initial weights, AdamW at the same settings, fp32, `--batch` blocks of `--block`
tokens per step. The corpus is the shipped PubMed abstracts (`pubmed-abstracts`), tokenised by a
byte-level BPE trained on it (it fills about 26k of the 50k rows; the head's cost is the rows, not the
tokens in use), each document followed by <|endoftext|>, and the same token stream feeds both sides:

* Hugging Face: the `run_clm` recipe: `datasets.map` tokenisation, `group_texts` into full blocks,
  `DataCollatorForLanguageModeling(mlm=False)`, `transformers.Trainer` (`adamw_torch`, no evaluation or
  saving); the model computes logits [B, L, V] and the loss over them.
* biofm: `biofm.train.loop.Trainer.train_step` with `CausalLMObjective`: the same blocks, the LM head
  and its cross-entropy fused and chunked (`chunked_linear_cross_entropy`), fused AdamW.

Each side runs in its own process (its peak RSS is its own: VmHWM, imports and data included) with
the same threads; the sides alternate in `--rounds` rounds. A side's throughput is the median of its
per-step rates after `--warmup` untimed steps; the reported ratios are medians over rounds:
`clm_ratio` (biofm / HF tokens/s) and `clm_rss_ratio` (biofm / HF peak RSS). `mfu_cpu` is biofm's
achieved training FLOP/s (6N + 12 x layers x hidden x block per token, N the matmul weights, tied head
once) over this machine's fp32 peak, the best large GEMM timed in the same run (`gemm_peak_gflops`).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if (str(Path(p).resolve()) if p else "") != _HERE]
sys.path.append(_HERE)  # after the stdlib: `_common` is found, bench/tokenize.py shadows nothing

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from itertools import chain  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import _common  # noqa: E402

CORPUS = "pubmed-abstracts"  # a registered dataset: fetched once, or read from $BIOFM_DATA_MIRROR
PRESET = "gpt2-tiny"


def prepare(work: Path, vocab: int, tokens_needed: int) -> None:
    """Train the BPE and write the documents both sides read (enough for `tokens_needed` tokens)."""
    from biofm.datasets import dataset_path
    from biofm.text.corpus import iter_documents
    from biofm.text.tokenizer import train_bpe

    docs = [d.text for d in iter_documents([dataset_path(CORPUS)])]
    tok = train_bpe(docs, vocab_size=vocab)
    tok.save(work / "tokenizer")
    picked, total = [], 0
    for doc, ids in zip(docs, tok.encode_batch(docs), strict=True):
        picked.append(doc)
        total += len(ids) + 1
        if total >= tokens_needed:
            break
    (work / "docs.json").write_text(json.dumps(picked))


def make_model(tok: Any, vocab: int, block: int):
    from biofm.models.presets import build_config, build_model

    cfg = build_config(PRESET, vocab_size=max(vocab, tok.vocab_size), pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=block)
    return build_model(cfg, seed=0)


def side_hf(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    from biofm.text.tokenizer import TextTokenizer

    tok = TextTokenizer.load(work / "tokenizer")
    hf_tok = tok.hf
    docs = json.loads((work / "docs.json").read_text())
    block = args.block

    def tokenize(examples: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        # run_clm's tokenize_function, each document ended by <|endoftext|> as biofm's stream has it
        out = hf_tok(examples["text"], add_special_tokens=False)
        return {k: [[*v, tok.eos_id if k == "input_ids" else 1] for v in vs] for k, vs in out.items()}

    def group_texts(examples: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        # run_clm's group_texts: concatenate, drop the remainder, cut into blocks, labels = inputs
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = (len(concatenated["input_ids"]) // block) * block
        result = {k: [t[i:i + block] for i in range(0, total, block)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    ds = Dataset.from_dict({"text": docs}).map(tokenize, batched=True, remove_columns=["text"])
    ds = ds.map(group_texts, batched=True, batch_size=len(docs))
    times: list[float] = []
    useful: list[int] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            times.append(time.perf_counter())

    class CountingCollator(DataCollatorForLanguageModeling):
        def __call__(self, examples, return_tensors=None):
            useful.append(sum(len(e["input_ids"]) for e in examples))
            return super().__call__(examples, return_tensors)

    model = make_model(tok, args.vocab, block)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch, max_steps=args.steps + args.warmup,
            learning_rate=1e-4, weight_decay=0.01, optim="adamw_torch", lr_scheduler_type="constant",
            logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[],
            use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True, seed=0,
            data_seed=0, max_grad_norm=1.0,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=ds,
                          data_collator=CountingCollator(hf_tok, mlm=False), callbacks=[Clock()])
        trainer.train()
        times.append(time.perf_counter())
    # the collator runs just before each step begins; tokens of timed steps only
    durations = np.diff(times)[args.warmup: args.warmup + args.steps]
    return {"tokens_per_s": _common.rate(useful[args.warmup: args.warmup + args.steps], durations),
            "flops_per_token": _common.training_flops_per_token(model, block)}


def side_biofm(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from biofm.text.tokenizer import TextTokenizer
    from biofm.train.config import TrainConfig
    from biofm.train.loop import TrainData, Trainer
    from biofm.train.objectives import CausalLMObjective

    tok = TextTokenizer.load(work / "tokenizer")
    docs = json.loads((work / "docs.json").read_text())
    stream = np.fromiter((t for ids in tok.encode_batch(docs) for t in (*ids, tok.eos_id)), dtype=np.int64)
    n = len(stream) // args.block
    blocks = stream[: n * args.block].reshape(n, args.block)  # biofm's layout: full blocks, no padding
    model = make_model(tok, args.vocab, args.block)
    special = np.asarray(sorted(tok.special_ids))
    targets = np.union1d(np.setdiff1d(np.arange(tok.vocab_size), special), [tok.eos_id])
    objective = CausalLMObjective(model, tok.pad_id, targets, np.zeros(model.config.vocab_size))
    cfg = TrainConfig(steps=args.steps + args.warmup, global_batch_tokens=args.batch * args.block,
                      micro_batch_size=args.batch, lr=1e-4, schedule="constant", warmup_steps=0, log_every=10**6,
                      eval_every=10**6, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(objective, cfg, TrainData(train=blocks, eval=blocks[:1], seq_len=args.block), out,
                          progress=False)
        for _ in range(args.warmup):
            trainer.train_step()
        tokens, durations = [], []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            tokens.append(trainer.train_step()["tokens"])
            durations.append(time.perf_counter() - t0)
    return {"tokens_per_s": _common.rate(tokens, durations),
            "flops_per_token": _common.training_flops_per_token(model, args.block)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of both sides")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per side and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="blocks per step (run_clm's default batch)")
    ap.add_argument("--block", type=int, default=256, help="tokens per block (gpt2-tiny's context)")
    ap.add_argument("--vocab", type=int, default=50257, help="model vocabulary (GPT-2's 50,257)")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads for both sides (default: cores)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny vocabulary, blocks and step counts")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--side", choices=["hf", "biofm"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch, args.block, args.vocab = 1, 2, 1, 2, 64, 1024
    threads = _common.set_threads(args.threads)
    if args.side:
        fields = (side_hf if args.side == "hf" else side_biofm)(args.work, args)
        _common.side_result(**fields)
        return
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
              "--block", str(args.block), "--vocab", str(args.vocab), "--threads", str(threads)]
    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # a few blocks to spare: the HF trainer shuffles, and the recipe drops each map batch's remainder
        prepare(work, args.vocab, args.batch * (args.steps + args.warmup + 2) * args.block)
        peaks = [_common.gemm_peak_flops()]

        def side(name: str):
            return lambda: _common.run_side(script, ["--side", name, "--work", str(work), *common])

        results = []
        for _ in range(args.rounds):
            results += _common.alternate(1, {"hf": side("hf"), "biofm": side("biofm")})
            peaks.append(_common.gemm_peak_flops())
            r = results[-1]
            print(f"round {len(results)}: Hugging Face {r['hf']['tokens_per_s']:8,.0f} tokens/s "
                  f"{r['hf']['peak_rss_mb']:6,.0f} MiB   biofm {r['biofm']['tokens_per_s']:8,.0f} tokens/s "
                  f"{r['biofm']['peak_rss_mb']:6,.0f} MiB", flush=True)
    ratio, ratios = _common.median_ratio(results, "tokens_per_s")
    rss_ratio, rss_ratios = _common.median_ratio(results, "peak_rss_mb")
    peak = max(peaks)
    med = {s: {k: float(np.median([r[s][k] for r in results])) for k in ("tokens_per_s", "peak_rss_mb")}
           for s in ("hf", "biofm")}
    fpt = results[0]["biofm"]["flops_per_token"]
    summary = {
        "clm_ratio": ratio, "clm_rss_ratio": rss_ratio, "mfu_cpu": fpt * med["biofm"]["tokens_per_s"] / peak,
        "hf_mfu_cpu": fpt * med["hf"]["tokens_per_s"] / peak, "gemm_peak_gflops": peak / 1e9,
        "hf_tokens_per_s": med["hf"]["tokens_per_s"], "biofm_tokens_per_s": med["biofm"]["tokens_per_s"],
        "hf_peak_rss_mb": med["hf"]["peak_rss_mb"], "biofm_peak_rss_mb": med["biofm"]["peak_rss_mb"],
        "round_ratios": ratios, "round_rss_ratios": rss_ratios, "flops_per_token": fpt,
        "preset": PRESET, "vocab": args.vocab, "batch": args.batch, "block": args.block, "steps": args.steps,
        "rounds": args.rounds, "threads": threads, "targets": {"clm_ratio": ">= 1.5", "clm_rss_ratio": "<= 0.5"},
    }
    print(f"text CLM ({PRESET}, vocab {args.vocab}): Hugging Face {med['hf']['tokens_per_s']:,.0f} tokens/s, "
          f"{med['hf']['peak_rss_mb']:,.0f} MiB peak; biofm {med['biofm']['tokens_per_s']:,.0f} tokens/s, "
          f"{med['biofm']['peak_rss_mb']:,.0f} MiB peak; ratio {ratio:.2f}x tokens/s, {rss_ratio:.2f}x RSS; "
          f"biofm at {summary['mfu_cpu']:.1%} of the {peak / 1e9:,.0f} GFLOP/s fp32 GEMM peak", flush=True)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
