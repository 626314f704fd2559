"""Every CPU benchmark in one go (`make bench`): one JSON per benchmark and the machine's description
under bench/results/, then the README's performance table regenerated from them.

    python bench/run_all.py [--only NAME ...] [--quick] [--no-readme]

Each benchmark runs as its own process with `--json`; its last stdout line is stored as
bench/results/NAME.json together with the command that produced it, so a regression shows as a diff of
that file. Figures only: no data, no paths. `--quick` passes `--quick` to every script (a smoke run of
the whole chain, figures meaningless) and writes to a temporary folder instead of bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if (str(Path(p).resolve()) if p else "") != _HERE]
sys.path.append(_HERE)  # after the stdlib: `_common` is found, bench/tokenize.py shadows nothing

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import _common  # noqa: E402

# name -> the script and its arguments for the recorded run (each a few minutes on 2 cores at most)
BENCHMARKS: dict[str, list[str]] = {
    "tokenize": ["bench/tokenize.py", "--mbp", "20"],
    "pretrain_dna": ["bench/pretrain.py", "--shape", "small", "--rounds", "3", "--steps", "6", "--warmup", "2"],
    "pretrain_text": ["bench/text_clm.py"],
    "pretrain_cells": ["bench/cells.py"],
    "probe": ["bench/probe.py", "--n", "10000"],
    "embed": ["bench/embed.py"],
}
QUICK = {"tokenize": ["bench/tokenize.py", "--mbp", "0.5", "--repeats", "1", "--baseline-repeats", "1"],
         "probe": ["bench/probe.py", "--n", "600", "--layers", "2", "--folds", "2"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run only these (default: all)")
    ap.add_argument("--quick", action="store_true", help="smoke run of every script into a temporary folder")
    ap.add_argument("--no-readme", action="store_true", help="do not regenerate the README table")
    ap.add_argument("--out", type=Path, default=_common.RESULTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="biofm-bench-")) if args.quick and args.out == _common.RESULTS else args.out
    threads = _common.set_threads(None)
    _common.write_result("machine", {**_common.machine(), "gemm_peak_gflops": _common.gemm_peak_flops() / 1e9},
                         out)
    for name in args.only or list(BENCHMARKS):
        argv = QUICK.get(name, [*BENCHMARKS[name], "--quick"]) if args.quick else BENCHMARKS[name]
        cmd = [sys.executable, *argv, "--json"]
        shown = "python " + " ".join([*argv, "--json"])
        print(f"== {name}: {shown}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        lines = proc.stdout.strip().splitlines()
        for line in lines[:-1]:
            print(f"   {line}", flush=True)
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        figures = json.loads(lines[-1])
        _common.write_result(name, {"command": shown, "threads": threads, "seconds": round(seconds, 1),
                                    "figures": figures}, out)
        print(f"   -> {out / (name + '.json')} ({seconds:.0f} s)", flush=True)
    if not args.no_readme and not args.quick:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_table.py"), "--results", str(out),
                        "--write", str(ROOT / "README.md")], check=True)
    print(f"results in {out}")


if __name__ == "__main__":
    main()
