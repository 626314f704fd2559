"""The same command under python, torchrun and accelerate launch (2 CPU processes, gloo)."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    rng = random.Random(0)
    with open(tmp / "g.fa", "w") as fh:
        for r in range(3):
            seq = "".join("ATGGCGTTAACC" if rng.random() < 0.5 else rng.choice("ACGT") * 3 for _ in range(750))
            fh.write(f">chr{r}\n{seq}\n")
    (tmp / "c.yaml").write_text(yaml.safe_dump({
        "name": "d", "data": {"fasta": [str(tmp / "g.fa")], "region_bp": 2000, "val_fraction": 0.2,
                              "cache_dir": str(tmp / "cache")},
        "tokenizer": {"k": 2}, "model": {"preset": "tiny", "block_tokens": 64},
        # 23 eval blocks: does not divide evenly over 2 processes
        "train": {"steps": 6, "global_batch_tokens": 512, "micro_batch_size": 2, "eval_every": 3, "log_every": 1,
                  "checkpoint_every": 3, "warmup_steps": 2, "eval_max_blocks": 23},
    }))
    env = {**os.environ, "BIOFM_QUIET": "1", "OMP_NUM_THREADS": "1"}
    one = tmp / "one"
    subprocess.run([str(BIN / "biofm"), "pretrain", str(tmp / "c.yaml"), "--set", f"run_dir={one}"],
                   check=True, env=env, capture_output=True, cwd=tmp)
    return tmp, env, _rows(one)


def _launch(cmd, tmp, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _same(a, b):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    assert [r["eval_loss"] for r in a if "eval_loss" in r] == pytest.approx(
        [r["eval_loss"] for r in b if "eval_loss" in r], rel=1e-6)


def test_torchrun_two_processes_match_one(setup):
    tmp, env, single = setup
    run = tmp / "torchrun"
    _launch([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29531", "-m", "biofm",
             "pretrain", str(tmp / "c.yaml"), "--set", f"run_dir={run}"], tmp, env)
    _same(single, _rows(run))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["accumulation_steps"] == 2
    # a checkpoint written by 2 processes resumes in 1: drop the last checkpoint and resume from step 3
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-6")
    subprocess.run([str(BIN / "biofm"), "pretrain", str(run / "config.yaml"), "--resume"], check=True, env=env,
                   capture_output=True, cwd=tmp)
    _same(single, _rows(run))


def test_accelerate_launch_two_processes_match_one(setup):
    tmp, env, single = setup
    run = tmp / "accel"
    _launch([str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "examples/accelerate/cpu_2proc.yaml"),
             "--main_process_port", "29532", "-m", "biofm", "pretrain", str(tmp / "c.yaml"),
             "--set", f"run_dir={run}"], tmp, env)
    _same(single, _rows(run))
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2


def test_fsdp_two_processes_and_their_resume_match_one(setup):
    """FSDP-2 shards parameters and optimizer state over 2 CPU processes; the checkpoint gathers them (model
    and optimizer through accelerate), so the run, its resume under FSDP and its resume in 1 process all
    reproduce the 1-process run."""
    import shutil

    tmp, env, single = setup
    run = tmp / "fsdp"
    launch = [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "examples/accelerate/fsdp_cpu_2proc.yaml"),
              "--main_process_port", "29534", "-m", "biofm", "pretrain"]
    _launch([*launch, str(tmp / "c.yaml"), "--set", f"run_dir={run}"], tmp, env)
    _same(single, _rows(run))
    assert sorted(p.name for p in (run / "checkpoints/step-6").iterdir()) == [
        "model", "optimizer.bin", "rng-0.pt", "rng-1.pt", "trainer_state.json"]
    shutil.rmtree(run / "checkpoints" / "step-6")
    _launch([*launch, str(run / "config.yaml"), "--resume"], tmp, env)
    _same(single, _rows(run))
    shutil.rmtree(run / "checkpoints" / "step-6")
    _launch([str(BIN / "biofm"), "pretrain", str(run / "config.yaml"), "--resume"], tmp, env)
    _same(single, _rows(run))


def test_checkpoint_of_one_process_resumes_in_two(setup):
    import shutil

    tmp, env, single = setup
    run = tmp / "one_then_two"
    shutil.copytree(tmp / "one", run)
    shutil.rmtree(run / "checkpoints" / "step-6")
    _launch([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29533", "-m", "biofm",
             "pretrain", str(run / "config.yaml"), "--resume", "--set", f"run_dir={run}"], tmp, env)
    _same(single, _rows(run))
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
