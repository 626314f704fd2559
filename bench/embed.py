"""Embedding throughput: biofm's embedding pass against `transformers.pipeline("feature-extraction")`.

    python bench/embed.py [--n 10000] [--min-bp 30] [--max-bp 300] [--preset small] [--rounds 3]
                          [--batch 64] [--threads N] [--device cpu|cuda] [--quick] [--json]

One model folder (the `--preset` shape, ModernBERT over NT's 6-mer tokens, random weights seeded 0,
saved with its tokenizer as `biofm pretrain` saves one) and `--n` DNA sequences of mixed lengths
(uniform `--min-bp`..`--max-bp`, cut in order from the shipped E. coli genome). Both sides embed the
same sequences with the same model, from its folder:

* Hugging Face: `pipeline("feature-extraction", model=FOLDER, return_tensors=True)` called on the list
  of sequences (its default batch size 1: batching would pad, and the pipeline hands back the padded
  positions without their mask, so a mean over them would be wrong), then the mean over each
  sequence's tokens of the last hidden state.
* biofm: `biofm.use.embed.sequence_embeddings(FOLDER, seqs, batch_size=--batch)`, what `biofm embed`
  and the evaluation's embedding pass run: length-sorted batches, every layer pooled in one pass.

The sequences are cut into `--rounds` slices; in each round both sides embed that round's slice (each
side in its own process, same threads, model loading included in the time), so every sequence is
embedded once per side and every round compares the two on the same inputs. `embed_ratio` is the
median over rounds of biofm / HF sequences per second; `max_abs_diff` the largest difference between
biofm's last-layer mean embedding and the pipeline's over all sequences (the target: <= 1e-5).
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

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import _common  # noqa: E402

GENOME = "ecoli-k12"  # a registered dataset: fetched once, or read from $BIOFM_DATA_MIRROR
K = 6


def make_inputs(work: Path, args: argparse.Namespace) -> None:
    """The model folder and the sequences (seqs.json) both sides read."""
    from biofm.datasets import dataset_path
    from biofm.dna.fasta import read_fasta
    from biofm.dna.tokenizer import KmerTokenizer
    from biofm.models.presets import build_config, build_model

    tok = KmerTokenizer(K)
    cfg = build_config(args.preset, vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id)
    model = build_model(cfg, seed=0)
    model.config.biofm_modality = "dna"
    model.save_pretrained(work / "model")
    tok.save(work / "model")
    genome = next(iter(read_fasta(dataset_path(GENOME)))).seq
    lengths = np.random.default_rng(0).integers(args.min_bp, args.max_bp + 1, size=args.n)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) % (len(genome) - args.max_bp)
    seqs = [genome[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
    (work / "seqs.json").write_text(json.dumps(seqs))


def side_hf(work: Path, part: slice, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    import torch
    from transformers import pipeline

    seqs = json.loads((work / "seqs.json").read_text())[part]
    t0 = time.perf_counter()
    pipe = pipeline("feature-extraction", model=str(work / "model"), tokenizer=str(work / "model"),
                    device=args.device, return_tensors=True)
    out = np.stack([t[0].mean(0).float().cpu().numpy() for t in pipe(seqs)])  # [n, H]: each [1, L, H]
    seconds = time.perf_counter() - t0
    del torch
    return out, seconds


def side_biofm(work: Path, part: slice, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    from biofm.models.device import on_device
    from biofm.use.embed import sequence_embeddings

    seqs = json.loads((work / "seqs.json").read_text())[part]
    t0 = time.perf_counter()
    with on_device(args.device):  # as `biofm embed --device`: bf16 autocast on CUDA
        out = sequence_embeddings(work / "model", seqs, batch_size=args.batch)["mean"][:, -1]  # [n, H], last layer
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="sequences, split over the rounds")
    ap.add_argument("--min-bp", type=int, default=30)
    ap.add_argument("--max-bp", type=int, default=300)
    ap.add_argument("--preset", default="small", help="model shape (ModernBERT)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds, each on its own slice")
    ap.add_argument("--batch", type=int, default=64, help="biofm's batch size (`biofm embed`'s default)")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads for both sides (default: cores)")
    ap.add_argument("--device", default="cpu", help="cpu (the 1e-5 identity check holds) or cuda: both sides on "
                    "the GPU, biofm under bf16 autocast as `biofm embed --device cuda` (the difference is reported)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: few sequences, the tiny preset")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--side", choices=["hf", "biofm"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--part", type=int, nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.rounds, args.preset, args.max_bp = 60, 1, "tiny", 200
    threads = _common.set_threads(args.threads)
    if args.side:
        part = slice(*args.part)
        emb, seconds = (side_hf if args.side == "hf" else side_biofm)(args.work, part, args)
        out = args.work / f"{args.side}-{part.start}.npy"
        np.save(out, emb.astype(np.float32))
        _common.side_result(seqs_per_s=emb.shape[0] / seconds, seconds=seconds, embeddings=str(out))
        return
    script = Path(__file__).resolve()
    bounds = np.linspace(0, args.n, args.rounds + 1).round().astype(int)
    results, diffs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_inputs(work, args)
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            extra = ["--work", str(work), "--part", str(a), str(b), "--batch", str(args.batch),
                     "--threads", str(threads), "--device", args.device]
            results += _common.alternate(1, {name: (lambda name=name, extra=extra: _common.run_side(
                script, ["--side", name, *extra])) for name in ("hf", "biofm")})
            r = results[-1]
            diffs.append(float(np.abs(np.load(r["hf"]["embeddings"]) - np.load(r["biofm"]["embeddings"])).max()))
            print(f"round {len(results)} (sequences {a}-{b}): pipeline {r['hf']['seqs_per_s']:7,.1f} seqs/s   "
                  f"biofm {r['biofm']['seqs_per_s']:7,.1f} seqs/s   max |diff| {diffs[-1]:.1e}", flush=True)
    ratio, ratios = _common.median_ratio(results, "seqs_per_s")
    total = {s: args.n / sum(r[s]["seconds"] for r in results) for s in ("hf", "biofm")}
    summary = {
        "embed_ratio": ratio, "max_abs_diff": max(diffs), "hf_seqs_per_s": total["hf"],
        "biofm_seqs_per_s": total["biofm"], "round_ratios": ratios, "n": args.n, "min_bp": args.min_bp,
        "max_bp": args.max_bp, "preset": args.preset, "batch": args.batch, "rounds": args.rounds,
        "threads": threads, "device": args.device, "targets": {"embed_ratio": ">= 2", "max_abs_diff": "<= 1e-5"},
    }
    print(f"embeddings ({args.n} sequences of {args.min_bp}-{args.max_bp} bp, {args.preset}): pipeline "
          f"{total['hf']:,.1f} seqs/s; biofm {total['biofm']:,.1f} seqs/s; ratio {ratio:.2f}x; "
          f"max |diff| {max(diffs):.1e}", flush=True)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
