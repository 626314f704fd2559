"""Cell pretraining throughput: biofm's cell step against the same BERT trained by Hugging Face's
Trainer on cells padded to the gene budget (the usual Geneformer/scGPT-style recipe).

    python bench/cells.py [--rounds 3] [--steps 6] [--warmup 2] [--batch 16] [--max-genes 1000]
                          [--preset tiny] [--threads N] [--quick] [--json]

Data: the shipped 10,000 mouse cells x 1,000 genes (`mouse10k`), tokenised once by biofm's cell
pipeline in rank-value mode (Geneformer: each cell's expressed genes ordered by count over the gene's
corpus median, at most `--max-genes`, after <cls>). Both sides train the same `BertForMaskedLM` (the
`--preset` shape, BERT; positions for `--max-genes` + 1 tokens), built once by `biofm.cells.pretrain
.prepare` with the same initial weights, on BERT's masked LM over gene ids (15% of the genes; AdamW at
the same settings, fp32, `--batch` cells per step):

* Hugging Face: every cell padded to `--max-genes` + 1 tokens (the recipe's fixed-length input),
  `DataCollatorForLanguageModeling` over the vocabulary's tokenizer (`GeneVocab.to_hf`),
  `transformers.Trainer` with `adamw_torch`; the model computes every position of every layer and the
  [B, L, V] logits.
* biofm: `Trainer.train_step` with `CellObjective` (`gene_id`): the same cells, cut at the batch's
  longest cell, the head (and the last layer's queries and feed-forward, `train.sparse_top`) only at
  the masked genes, fused AdamW.

Each side runs in its own process with the same threads; the sides alternate in `--rounds` rounds and
`cells_ratio` is the median over rounds of biofm / HF cells per second (each side's figure is the
median of its per-step rates after `--warmup` untimed steps). `mfu_cpu` is biofm's achieved training
FLOP/s (6N + 12 x layers x hidden x the mean cell length, per real token, times real tokens/s) over
the machine's fp32 GEMM peak timed in the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if (str(Path(p).resolve()) if p else "") != _HERE]
sys.path.append(_HERE)  # after the stdlib: `_common` is found, bench/tokenize.py shadows nothing

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import _common  # noqa: E402

DATASET = "mouse10k"  # a registered dataset: fetched once, or read from $BIOFM_DATA_MIRROR
os.environ.setdefault("BIOFM_QUIET", "1")


def prepared(args: argparse.Namespace):
    """biofm's own cell pipeline: dataset (cached after the first call), model and objective."""
    from biofm.cells.pretrain import CellPretrainConfig, prepare
    from biofm.models.presets import get_preset

    cfg = CellPretrainConfig.model_validate({
        "modality": "cells", "seed": 0,
        "data": {"h5ad": [f"dataset:{DATASET}"], "val_fraction": 0.1},
        "tokenizer": {"mode": "rank_value", "max_genes": args.max_genes},
        "objectives": {"gene_id": 1.0},
        "model": {"preset": args.preset, "arch": "bert",
                  "overrides": {"max_position_embeddings": max(args.max_genes + 1, 64)}},
        "train": {"steps": args.steps + args.warmup, "global_batch_tokens": args.batch * (args.max_genes + 1),
                  "micro_batch_size": args.batch, "lr": 1e-4, "schedule": "constant", "warmup_steps": 0,
                  "mask_prob": 0.15, "log_every": 10**6, "eval_every": 10**6, "checkpoint_every": 10**6},
    })
    return cfg, prepare(cfg, get_preset(args.preset), args.max_genes + 1)


def cells_needed(args: argparse.Namespace) -> int:
    return args.batch * (args.steps + args.warmup)


def side_hf(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    _, prep = prepared(args)
    vocab, model = prep.tokenizer, prep.objective.model
    rows = prep.data.train[np.arange(cells_needed(args))]["gene_ids"].astype(np.int64)  # [N, max_genes + 1]
    ds = Dataset.from_dict({"input_ids": rows.tolist(), "attention_mask": (rows != vocab.pad_id).astype(np.int64)
                            .tolist()})
    times: list[float] = []
    real: list[int] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            times.append(time.perf_counter())

    class CountingCollator(DataCollatorForLanguageModeling):
        def __call__(self, examples, return_tensors=None):
            real.append(sum(int(np.sum(e["attention_mask"])) for e in examples))
            return super().__call__(examples, return_tensors)

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch, max_steps=args.steps + args.warmup,
            learning_rate=1e-4, weight_decay=0.01, optim="adamw_torch", lr_scheduler_type="constant",
            logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[],
            use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True, seed=0,
            data_seed=0, max_grad_norm=1.0,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=ds,
                          data_collator=CountingCollator(vocab.to_hf(), mlm_probability=0.15), callbacks=[Clock()])
        trainer.train()
        times.append(time.perf_counter())
    durations = np.diff(times)[args.warmup: args.warmup + args.steps]
    timed = real[args.warmup: args.warmup + args.steps]
    return {"cells_per_s": _common.rate([args.batch] * len(durations), durations),
            "tokens_per_s": _common.rate(timed, durations), **_flops(model, rows, vocab.pad_id)}


def side_biofm(args: argparse.Namespace) -> dict[str, Any]:
    from biofm.train.loop import Trainer

    cfg, prep = prepared(args)
    data = prep.data
    rows = data.train[np.arange(cells_needed(args))]["gene_ids"]
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(prep.objective, cfg.train, data, out, seed=cfg.seed, progress=False)
        for _ in range(args.warmup):
            trainer.train_step()
        tokens, durations = [], []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            tokens.append(trainer.train_step()["tokens"])
            durations.append(time.perf_counter() - t0)
    return {"cells_per_s": _common.rate([args.batch] * len(durations), durations),
            "tokens_per_s": _common.rate(tokens, durations),
            **_flops(prep.objective.model, rows, prep.tokenizer.pad_id)}


def _flops(model: Any, rows: np.ndarray, pad_id: int) -> dict[str, float]:
    """Training FLOPs per real token at the cells' mean length (padding earns nothing)."""
    mean_len = float(np.mean(np.sum(np.asarray(rows) != pad_id, axis=1)))
    return {"flops_per_token": _common.training_flops_per_token(model, round(mean_len)), "mean_cell_tokens": mean_len}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of both sides")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per side and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="cells per step")
    ap.add_argument("--max-genes", type=int, default=1000, help="the gene budget: positions per cell after <cls>")
    ap.add_argument("--preset", default="tiny", help="model shape (built as BERT)")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads for both sides (default: cores)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: small budget and step counts")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--side", choices=["hf", "biofm"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch, args.max_genes = 1, 2, 1, 4, 128
    threads = _common.set_threads(args.threads)
    if args.side:
        _common.side_result(**(side_hf if args.side == "hf" else side_biofm)(args))
        return
    prepared(args)  # build the tokenised cells once, before any side is timed
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
              "--max-genes", str(args.max_genes), "--preset", args.preset, "--threads", str(threads)]
    script = Path(__file__).resolve()
    peaks = [_common.gemm_peak_flops()]
    results = []
    for _ in range(args.rounds):
        results += _common.alternate(1, {name: (lambda name=name: _common.run_side(script, ["--side", name, *common]))
                                         for name in ("hf", "biofm")})
        peaks.append(_common.gemm_peak_flops())
        r = results[-1]
        print(f"round {len(results)}: Hugging Face {r['hf']['cells_per_s']:7,.1f} cells/s   "
              f"biofm {r['biofm']['cells_per_s']:7,.1f} cells/s", flush=True)
    ratio, ratios = _common.median_ratio(results, "cells_per_s")
    peak = max(peaks)
    med = {s: {k: float(np.median([r[s][k] for r in results])) for k in ("cells_per_s", "tokens_per_s", "peak_rss_mb")}
           for s in ("hf", "biofm")}
    fpt = results[0]["biofm"]["flops_per_token"]
    summary = {
        "cells_ratio": ratio, "mfu_cpu": fpt * med["biofm"]["tokens_per_s"] / peak,
        "hf_mfu_cpu": fpt * med["hf"]["tokens_per_s"] / peak, "gemm_peak_gflops": peak / 1e9,
        "hf_cells_per_s": med["hf"]["cells_per_s"], "biofm_cells_per_s": med["biofm"]["cells_per_s"],
        "hf_peak_rss_mb": med["hf"]["peak_rss_mb"], "biofm_peak_rss_mb": med["biofm"]["peak_rss_mb"],
        "round_ratios": ratios, "mean_cell_tokens": results[0]["biofm"]["mean_cell_tokens"],
        "flops_per_token": fpt, "preset": args.preset, "max_genes": args.max_genes, "batch": args.batch,
        "steps": args.steps, "rounds": args.rounds, "threads": threads, "targets": {"cells_ratio": ">= 3"},
    }
    print(f"cells ({DATASET}, {args.preset} BERT, budget {args.max_genes} genes, mean cell "
          f"{summary['mean_cell_tokens']:.0f} tokens): Hugging Face {med['hf']['cells_per_s']:,.1f} cells/s; biofm "
          f"{med['biofm']['cells_per_s']:,.1f} cells/s; ratio {ratio:.2f}x; biofm at {summary['mfu_cpu']:.1%} of the "
          f"{peak / 1e9:,.0f} GFLOP/s fp32 GEMM peak", flush=True)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
