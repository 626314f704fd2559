"""The GPU benchmark scripts still run (a CPU smoke run; the figures come from a GPU)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mfu_bench_runs_and_reports_json():
    proc = subprocess.run([sys.executable, str(ROOT / "bench/mfu.py"), "--preset", "tiny", "--seq", "64",
                           "--batch-tokens", "256", "--steps", "1", "--warmup", "1", "--allow-cpu", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    r = out["results"][0]
    assert r["seq"] == 64 and r["tokens_per_s"] > 0 and r["flops_per_token"] > 6 * 1e5 and r["mfu"] is None
