"""What every CPU benchmark here shares: sides in their own processes, alternated rounds, peak RSS,
the machine's measured fp32 GEMM peak (for `mfu_cpu`) and its description.

Import it after the `sys.path` fix each script starts with: bench/tokenize.py would shadow the stdlib
`tokenize`, so scripts drop bench/ from the front of the path and append it at the end
(`sys.path.append(_HERE)`), where the stdlib is found first and `_common` still is.

A side of a comparison (Hugging Face recipe, biofm) runs in a fresh interpreter (`run_side`): each
then has its own peak resident set (VmHWM, the kernel's high-water mark of the process, read by the
child at its end), and neither inherits the other's allocator state or warm caches. The parent sets
the same thread count for both (`set_threads`, passed on through OMP_NUM_THREADS / MKL_NUM_THREADS and
the child's `--threads`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def set_threads(n: int | None) -> int:
    """Use `n` threads (default: the cores this process may run on) in torch and in every child."""
    import torch

    n = n or len(os.sched_getaffinity(0))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    # idle OpenMP workers otherwise spin on cores shared with the other side's leftovers and other jobs
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(n)
    return n


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(units: Sequence[float] | np.ndarray, seconds: Sequence[float] | np.ndarray) -> float:
    """Units/s from per-step figures: the median of the per-step rates. On a shared 2-core machine
    single steps stall now and then; the median ignores those, the same way on both sides."""
    return float(np.median(np.asarray(units, dtype=np.float64) / np.asarray(seconds, dtype=np.float64)))


def side_result(**fields: Any) -> None:
    """A child's answer: one JSON line on stdout, with its peak RSS added."""
    print(json.dumps({**fields, "peak_rss_mb": peak_rss_mb()}), flush=True)


def run_side(script: Path, args: Sequence[str], timeout: float = 1800) -> dict[str, Any]:
    """Run `script --side ... args` in a fresh interpreter and return the JSON of its last stdout line."""
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alternate(rounds: int, sides: dict[str, Callable[[], dict[str, Any]]]) -> list[dict[str, dict[str, Any]]]:
    """Every side once per round, in the given order: a slow spell of a shared machine hits both."""
    return [{name: fn() for name, fn in sides.items()} for _ in range(rounds)]


def median_ratio(results: list[dict[str, dict[str, Any]]], key: str, ours: str = "biofm",
                 theirs: str = "hf") -> tuple[float, list[float]]:
    """(median over rounds of ours[key] / theirs[key], the per-round ratios)."""
    ratios = [float(r[ours][key]) / float(r[theirs][key]) for r in results]
    return float(np.median(ratios)), ratios


def gemm_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matmul peak as torch reaches it here: the best of `repeats` timed [n, n] x [n, n]
    GEMMs (2n^3 FLOPs each) at the current thread count. The reference `mfu_cpu` divides by, measured in
    the same run as the benchmark so that it sees the same load."""
    import torch

    a = torch.randn(n, n)
    b = torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up: thread pool, pages
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def training_flops_per_token(model: Any, seq_len: int) -> float:
    """Training FLOPs per token position: 6N (matmul weights) + 12 x layers x hidden x seq_len, the
    count the trainer uses for GPU MFU (`biofm.train.loop._flops_per_token`)."""
    from biofm.train.loop import _flops_per_token

    return _flops_per_token(model, seq_len)


def machine() -> dict[str, Any]:
    """What the figures were measured on: enough to tell two result files' machines apart."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "memory_gib": mem,
            "threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "system": f"{platform.system()} {platform.machine()}",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


def write_result(name: str, summary: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    """bench/results/NAME.json (atomically): the figures only, no data."""
    from biofm.io.atomic import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    write_json(path, summary)
    return path
