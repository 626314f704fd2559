"""What a careful user does to a run (kill it, interrupt it, fill the disk, damage files, start it twice,
point --overwrite at the wrong folder) and what biofm must answer: an exact resume or one clear line.

Real `biofm pretrain` processes on a tiny synthetic genome; every run's metrics are compared with one
uninterrupted reference run. Signals and resource limits are POSIX-only.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
STEPS = 12


def _genome(path: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for r in range(3):
            seq = "".join("ATGGCGTTAACC" if rng.random() < 0.5 else rng.choice("ACGT") * 3 for _ in range(800))
            fh.write(f">chr{r}\n{seq}\n")


def _config(tmp: Path, run: Path, **train: object) -> Path:
    cfg = tmp / f"{run.name}.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": run.name, "run_dir": str(run),
        "data": {"fasta": [str(tmp / "g.fa")], "cache_dir": str(tmp / "cache"), "region_bp": 2000,
                 "val_fraction": 0.2},
        "tokenizer": {"k": 2}, "model": {"preset": "tiny", "block_tokens": 64},
        "train": {"steps": STEPS, "global_batch_tokens": 512, "micro_batch_size": 8, "eval_every": 4,
                  "log_every": 2, "checkpoint_every": 2, "warmup_steps": 2, "keep_checkpoints": 3, **train},
    }))
    return cfg


def _biofm(*args: str, cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "BIOFM_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / "biofm"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, **kw)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "BIOFM_QUIET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(BIN / "biofm"), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _same(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)
    evals = [[(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r] for rows in (a, b)]
    assert [s for s, _ in evals[0]] == [s for s, _ in evals[1]]
    assert [v for _, v in evals[0]] == pytest.approx([v for _, v in evals[1]], rel=1e-6)


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for w in words:
        assert w in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> tuple[Path, list[dict]]:
    tmp = tmp_path_factory.mktemp("faults")
    _genome(tmp / "g.fa")
    run = tmp / "reference"
    _biofm("pretrain", str(_config(tmp, run)), cwd=tmp)
    return tmp, _rows(run)


def _wait_for(path_glob: tuple[Path, str], proc: subprocess.Popen, timeout: float = 120) -> Path:
    folder, pattern = path_glob
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = list(folder.glob(pattern)) if folder.is_dir() else []
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"finished before {pattern} appeared: {proc.stderr.read()[-2000:]}")
        time.sleep(0.001)
    raise AssertionError(f"{pattern} never appeared")


# ---------------------------------------------------------------------------------------- kills


def test_sigkill_during_a_checkpoint_write_resumes_exactly(ref) -> None:
    tmp, reference = ref
    run = tmp / "killed"
    cfg = _config(tmp, run)
    proc = _start("pretrain", str(cfg), cwd=tmp)
    _wait_for((run / "checkpoints", "step-*"), proc)  # one complete checkpoint first
    partial = _wait_for((run / "checkpoints", ".step-*.tmp-write"), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    complete = [p for p in (run / "checkpoints").glob("step-*")]
    assert complete and all((p / "trainer_state.json").is_file() for p in complete)  # never a half checkpoint
    _biofm("pretrain", str(cfg), "--resume", cwd=tmp)
    _same(_rows(run), reference)
    assert not partial.exists()  # the killed write's temporary folder is gone


def test_ctrl_c_says_how_to_resume_and_the_resume_is_exact(ref) -> None:
    tmp, reference = ref
    run = tmp / "interrupted"
    cfg = _config(tmp, run)
    proc = _start("pretrain", str(cfg), cwd=tmp)
    _wait_for((run / "checkpoints", "step-*"), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted; the last complete checkpoint is step-" in err
    assert f"biofm pretrain {run / 'config.yaml'} --resume" in err
    _biofm("pretrain", str(run / "config.yaml"), "--resume", cwd=tmp)
    _same(_rows(run), reference)


def test_killed_before_its_first_checkpoint_starts_over_without_flags(ref) -> None:
    tmp, reference = ref
    run = tmp / "early"
    cfg = _config(tmp, run)
    proc = _start("pretrain", str(cfg), cwd=tmp)
    _wait_for((run, "config.yaml"), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    shutil.rmtree(run / "checkpoints", ignore_errors=True)  # whatever it managed, it had no checkpoint
    out = _biofm("pretrain", str(cfg), cwd=tmp)
    assert "no complete checkpoint yet" in out.stderr
    _same(_rows(run), reference)


# ---------------------------------------------------------------------------------------- disk and files


def test_file_size_limit_during_a_checkpoint_is_one_line_and_keeps_nothing_half_written(ref) -> None:
    tmp, reference = ref
    run = tmp / "full"
    cfg = _config(tmp, run)
    limit = 2 << 20  # the tiny model's weights (~1.4 MB) fit, its optimizer state (~2.9 MB) does not

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = _biofm("pretrain", str(cfg), cwd=tmp, check=False, preexec_fn=small_files)
    _one_line_error(proc, "no space to write the checkpoint", "--resume")
    assert proc.returncode == 2
    assert not list((run / "checkpoints").glob("*")) if (run / "checkpoints").exists() else True
    _biofm("pretrain", str(cfg), cwd=tmp)  # no checkpoint was kept: a plain rerun starts over
    _same(_rows(run), reference)


@pytest.mark.parametrize("damage", ["optimizer.bin", "model/model.safetensors", "trainer_state.json"])
def test_unreadable_latest_checkpoint_falls_back_to_the_previous_one(ref, damage: str) -> None:
    tmp, reference = ref
    run = tmp / f"damaged-{damage.replace('/', '-')}"
    cfg = _config(tmp, run)
    _biofm("pretrain", str(cfg), cwd=tmp)
    shutil.rmtree(run / "checkpoints" / f"step-{STEPS}")  # latest is now step-22; damage it
    target = run / "checkpoints" / f"step-{STEPS - 2}" / damage
    target.write_bytes(target.read_bytes()[: max(1, target.stat().st_size // 2)])
    out = _biofm("pretrain", str(cfg), "--resume", cwd=tmp)
    assert f"step-{STEPS - 2}: unreadable checkpoint" in out.stderr or f"step-{STEPS - 2}" in out.stderr
    assert f"falling back to step-{STEPS - 4}" in out.stderr or damage == "trainer_state.json"
    _same(_rows(run), reference)


def test_half_written_metrics_line_and_a_null_best_eval_resume(ref) -> None:
    tmp, _ = ref
    run = tmp / "metrics"
    cfg = _config(tmp, run, eval_every=100)  # checkpoints before any evaluation store best_eval: null
    _biofm("pretrain", str(cfg), cwd=tmp)
    state = json.loads((run / "checkpoints" / f"step-{STEPS - 4}" / "trainer_state.json").read_text())
    assert state["best_eval"] is None
    for step in (STEPS, STEPS - 2):
        shutil.rmtree(run / "checkpoints" / f"step-{step}")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99, "loss": 1.2')  # the process died mid-write
    out = _biofm("pretrain", str(cfg), "--resume", cwd=tmp)
    assert "half-written last line ignored" in out.stderr
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(2, STEPS + 1, 2))


def test_stale_temporaries_of_killed_writes_are_removed(ref) -> None:
    tmp, _ = ref
    run = tmp / "stale"
    cfg = _config(tmp, run, steps=4)
    _biofm("pretrain", str(cfg), cwd=tmp)
    (run / ".model.tmp-abc123").mkdir()
    (run / "checkpoints" / ".step-6.tmp-write").mkdir()
    (run / ".summary.json.tmp-x").write_text("{")
    _biofm("pretrain", str(cfg), "--resume", "--set", "train.steps=6", cwd=tmp)
    left = [p.name for p in run.rglob(".*tmp*")]
    assert left == []


# ---------------------------------------------------------------------------------------- two at once


def test_a_second_process_on_the_same_run_exits_with_one_line(ref) -> None:
    tmp, _ = ref
    run = tmp / "twice"
    cfg = _config(tmp, run, steps=100_000, checkpoint_every=10_000)  # still running when the second starts
    first = _start("pretrain", str(cfg), cwd=tmp)
    try:
        _wait_for((run, "config.yaml"), first)
        second = _biofm("pretrain", str(cfg), "--resume", cwd=tmp, check=False)
        _one_line_error(second, "another biofm process", str(first.pid))
    finally:
        first.kill()
        first.wait()


# ---------------------------------------------------------------------------------------- never lose data


def test_overwrite_never_deletes_the_working_directory_or_inputs(ref) -> None:
    tmp, _ = ref
    work = tmp / "work"
    work.mkdir()
    shutil.copy(tmp / "g.fa", work / "g.fa")
    (work / "notes.txt").write_text("mine")
    cfg = yaml.safe_load(_config(tmp, tmp / "x").read_text())
    cfg["data"]["fasta"] = [str(work / "g.fa")]
    (work / "c.yaml").write_text(yaml.safe_dump({**cfg, "run_dir": "."}))
    _one_line_error(_biofm("pretrain", "c.yaml", "--overwrite", cwd=work, check=False), "--overwrite refused",
                    "working directory")
    (work / "c2.yaml").write_text(yaml.safe_dump({**cfg, "run_dir": str(work)}))
    _one_line_error(_biofm("pretrain", str(work / "c2.yaml"), "--overwrite", cwd=tmp, check=False),
                    "--overwrite refused")
    _one_line_error(_biofm("pretrain", str(work / "c2.yaml"), "--set", "run_dir=null", "--set", "name=",
                           "--overwrite", cwd=work, check=False), "name ''")
    assert sorted(p.name for p in work.iterdir()) == ["c.yaml", "c2.yaml", "g.fa", "notes.txt"]
    assert (work / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_a_run_folder_holding_its_input(ref) -> None:
    tmp, _ = ref
    run = tmp / "holds-input"
    cfg = _config(tmp, run, steps=2)
    _biofm("pretrain", str(cfg), cwd=tmp)
    shutil.copy(tmp / "g.fa", run / "g.fa")
    data = yaml.safe_load(cfg.read_text())
    data["data"]["fasta"] = [str(run / "g.fa")]
    cfg.write_text(yaml.safe_dump(data))
    _one_line_error(_biofm("pretrain", str(cfg), "--overwrite", cwd=tmp, check=False), "holds the run's input")
    assert (run / "g.fa").exists()


def test_resume_refuses_changed_data_seed_or_model_and_keeps_the_stored_config(ref) -> None:
    tmp, _ = ref
    run = tmp / "changed"
    cfg = _config(tmp, run, steps=4)
    _biofm("pretrain", str(cfg), cwd=tmp)
    stored = (run / "config.yaml").read_text()
    for change, word in ((["--set", "seed=1"], "seed"), (["--set", "model.preset=small"], "model.preset")):
        proc = _biofm("pretrain", str(cfg), "--resume", *change, cwd=tmp, check=False)
        _one_line_error(proc, "--resume with changed", word, "--allow-changes")
        assert (run / "config.yaml").read_text() == stored
    # the same file name with other contents
    original = (tmp / "g.fa").read_bytes()
    try:
        _genome(tmp / "g.fa", seed=7)
        _one_line_error(_biofm("pretrain", str(cfg), "--resume", cwd=tmp, check=False), "changed since this run")
        assert (run / "config.yaml").read_text() == stored
    finally:
        (tmp / "g.fa").write_bytes(original)
    # an intended change of a training setting is taken and recorded
    _biofm("pretrain", str(cfg), "--resume", "--set", "train.steps=6", cwd=tmp)
    assert "steps: 6" in (run / "config.yaml").read_text()
