"""Throughput of biofm's k-mer tokenizer against the Hugging Face `tokenizers` pipeline it exports.

    python bench/tokenize.py [--mbp 50] [--n-fraction 0.01] [--k 6] [--window-bp 6000] [--repeats 3] [--json]

One random but reproducible sequence (seeded; `--n-fraction` of its bases, default 1%, in N runs of
1-20 bp) is built in memory and both tokenizers see exactly the same input, in two shapes:

* windows: the sequence cut into `--window-bp` windows (6,000 bp ~ a 1,000-token block at k=6), which
  is how biofm tokenises when it builds a pretraining dataset: `KmerTokenizer.encode_batch(windows)`.
  This is the headline figure.
* chunks: the sequence cut into 1,000,000-bp chunks, `KmerTokenizer.encode` per chunk.

The baseline is the tokenizer that `KmerTokenizer.to_hf()` builds, driven through its backend
`tokenizers.Tokenizer.encode_batch(..., add_special_tokens=False)` plus reading `.ids` (what a
straightforward script does); `encode_batch_fast` (no offsets) is timed as well and the ratio is taken
against the faster of the two, so it is not flattered. The Rust baseline uses all threads it is given
(`TOKENIZERS_PARALLELISM=true`, rayon = CPU count); biofm is single-threaded numpy. Times are the
best of `--repeats` (biofm) / `--baseline-repeats` (HF) runs; every biofm id list is checked against
the baseline's.

Tokenisation follows Nucleotide Transformer's rule: non-overlapping 6-mers from the start of each
piece, and wherever a 6-mer would contain N (or the piece ends), single-base tokens instead. The
windows rate is extrapolated to a 3.1 Gbp human-genome-sized input (`genome_seconds`; the target is
under 40 s on one core, i.e. at least 80 Mbp/s).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running `python bench/tokenize.py` puts bench/ first on sys.path, so this file would shadow the
# stdlib `tokenize` module (imported by inspect, linecache, transformers ...). Drop that entry first.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if (str(Path(p).resolve()) if p else "") != _HERE]

import os  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from biofm.dna.tokenizer import KmerTokenizer  # noqa: E402

CHUNK_BP = 1_000_000
GENOME_BP = 3.1e9  # human genome (GRCh38 primary assembly, about 3.1 Gbp)


def make_sequence(n_bp: int, n_fraction: float = 0.001, seed: int = 0) -> str:
    """Uniform random ACGT with N runs of 1-20 bp covering about `n_fraction` of the bases."""
    rng = np.random.default_rng(seed)
    seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, n_bp, dtype=np.uint8)].copy()
    run_lens = rng.integers(1, 21, max(1, int(n_bp * n_fraction / 10.5)))
    starts = rng.integers(0, max(1, n_bp - 20), len(run_lens))
    for start, length in zip(starts.tolist(), run_lens.tolist(), strict=True):
        seq[start : start + length] = ord("N")
    return seq.tobytes().decode("ascii")


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(repeats):
        result = None  # free the previous result before timing the next run
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, result


def same_ids(ours: list[np.ndarray], theirs: list[list[int]]) -> bool:
    if len(ours) != len(theirs):
        return False
    flat_ours = np.concatenate(ours) if ours else np.zeros(0, np.int32)
    flat_theirs = np.fromiter((i for ids in theirs for i in ids), dtype=np.int64, count=len(flat_ours))
    lens_ok = all(len(a) == len(b) for a, b in zip(ours, theirs, strict=True))
    return lens_ok and bool(np.array_equal(flat_ours, flat_theirs))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mbp", type=float, default=50.0, help="input size in megabases")
    ap.add_argument("--n-fraction", type=float, default=0.01, help="fraction of bases in N runs")
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--window-bp", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of biofm (best is reported)")
    ap.add_argument(
        "--baseline-repeats", type=int, default=2, help="timed runs of each HF variant (it is ~30x slower)"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)

    n_bp = int(args.mbp * 1_000_000)
    mbp = n_bp / 1e6
    t0 = time.perf_counter()
    seq = make_sequence(n_bp, args.n_fraction)
    windows = [seq[i : i + args.window_bp] for i in range(0, n_bp, args.window_bp)]
    chunks = [seq[i : i + CHUNK_BP] for i in range(0, n_bp, CHUNK_BP)]
    gen_s = time.perf_counter() - t0

    tok = KmerTokenizer(args.k)
    backend = tok.to_hf().backend_tokenizer
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"input: {mbp:g} Mbp random ACGT, {seq.count('N') / n_bp:.3%} N, seed 0 (built in {gen_s:.1f}s); "
        f"k={args.k}; {len(windows)} windows of {args.window_bp} bp, {len(chunks)} chunks of {CHUNK_BP} bp"
    )
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"tokenizers {__import__('tokenizers').__version__}; CPU threads available: {threads}; "
        f"TOKENIZERS_PARALLELISM={os.environ['TOKENIZERS_PARALLELISM']} (baseline multi-threaded, "
        "biofm single-threaded)"
    )

    def hf_ids(pieces: list[str]) -> list[list[int]]:
        return [e.ids for e in backend.encode_batch(pieces, add_special_tokens=False)]

    def hf_fast_ids(pieces: list[str]) -> list[list[int]]:
        return [e.ids for e in backend.encode_batch_fast(pieces, add_special_tokens=False)]

    results: dict[str, Any] = {}
    rows = []
    for shape, pieces, ours in (
        ("windows", windows, lambda: tok.encode_batch(windows)),
        ("chunks", chunks, lambda: [tok.encode(c) for c in chunks]),
    ):
        b_best, b_times, b_ids = best_time(ours, args.repeats)
        h_best, h_times, h_ids = best_time(lambda p=pieces: hf_ids(p), args.baseline_repeats)
        ok = same_ids(b_ids, h_ids)
        del h_ids
        f_best, f_times, f_ids = best_time(lambda p=pieces: hf_fast_ids(p), args.baseline_repeats)
        ok = ok and same_ids(b_ids, f_ids)
        del f_ids, b_ids
        base = min(h_best, f_best)
        results[shape] = {
            "biofm_mbp_s": mbp / b_best,
            "hf_encode_batch_mbp_s": mbp / h_best,
            "hf_encode_batch_fast_mbp_s": mbp / f_best,
            "ratio": h_best / b_best if h_best == base else f_best / b_best,
            "identical_ids": ok,
            "times_s": {"biofm": b_times, "hf_encode_batch": h_times, "hf_encode_batch_fast": f_times},
        }
        rows.append((shape, mbp / b_best, mbp / h_best, mbp / f_best, base / b_best, ok))

    print(f"{'input shape':<12}{'biofm Mbp/s':>13}{'HF batch':>11}{'HF fast':>10}{'ratio':>8}  ids equal")
    for shape, b, h, f, ratio, ok in rows:
        print(f"{shape:<12}{b:>13.1f}{h:>11.1f}{f:>10.1f}{ratio:>7.1f}x  {ok}")
    print(
        "biofm: windows = KmerTokenizer.encode_batch (the dataset-building path), chunks = encode per "
        "chunk; HF: to_hf() backend encode_batch / encode_batch_fast (+ .ids); ratio vs the faster HF."
    )
    head, chunk = results["windows"], results["chunks"]
    genome_s = GENOME_BP / 1e6 / head["biofm_mbp_s"]
    print(f"3.1 Gbp genome at the windows rate ({head['biofm_mbp_s']:.1f} Mbp/s, one core): {genome_s:.1f} s "
          f"(target < 40 s)")
    summary = {
        "biofm_mbp_s": round(head["biofm_mbp_s"], 2),
        "baseline_mbp_s": round(max(head["hf_encode_batch_mbp_s"], head["hf_encode_batch_fast_mbp_s"]), 2),
        "ratio": round(head["ratio"], 2),
        "pipeline": f"encode_batch on {args.window_bp}-bp windows",
        "genome_seconds": round(genome_s, 1),
        "n_fraction": args.n_fraction,
        "identical_ids": all(r["identical_ids"] for r in results.values()),
        "mbp": mbp,
        "k": args.k,
        "baseline_threads": threads,
        "repeats": {"biofm": args.repeats, "baseline": args.baseline_repeats},
        "chunks_1mbp": {
            "biofm_mbp_s": round(chunk["biofm_mbp_s"], 2),
            "baseline_mbp_s": round(
                max(chunk["hf_encode_batch_mbp_s"], chunk["hf_encode_batch_fast_mbp_s"]), 2
            ),
            "ratio": round(chunk["ratio"], 2),
        },
    }
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
