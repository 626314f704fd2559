"""The shared pretraining loop: one file, readable top to bottom.

It knows nothing of DNA, cells or text: it receives rows of a dataset (fixed-length blocks) and an
`Objective` that turns rows into batches and scores them. It owns the numerics the Hugging Face
Trainer has got wrong before: each loss component of a step is sum(loss) / (its targets in the whole
global batch, over accumulation steps and processes); evaluation sums losses and counts across
processes; the data position is stored in each checkpoint so a resumed run sees exactly the batches
it would have seen.
Runs unchanged under `python`, `torchrun` and `accelerate launch` (accelerate picks up the launcher).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from transformers import PreTrainedModel

from biofm.errors import BiofmError
from biofm.io.atomic import write_json, write_text
from biofm.io.metrics import read_metrics
from biofm.train.config import TrainConfig
from biofm.train.objectives import Batch, Objective
from biofm.train.schedule import lr_factor

EVAL_KEY_OFFSET = 1 << 40  # eval examples are keyed apart from training samples


class TrainingDiverged(BiofmError):
    exit_code = 3


@dataclass
class TrainData:
    """Rows the objective can collate: `rows[idx]` for an index array, `len(rows)`."""

    train: Any  # e.g. a memory-mapped [N, L] BlockView, or a multi-column view for cells
    eval: Any
    seq_len: int  # positions per row (for the global batch in tokens)


@dataclass
class Layout:
    """How a global batch is cut into micro-batches over processes."""

    world: int
    micro: int
    accum: int
    block: int

    @property
    def global_seqs(self) -> int:
        return self.world * self.micro * self.accum

    @classmethod
    def derive(cls, cfg: TrainConfig, world: int, block: int) -> Layout:
        want = max(1, round(cfg.global_batch_tokens / block))
        micro = min(cfg.micro_batch_size, max(1, want // world))
        accum = max(1, math.ceil(want / (micro * world)))
        return cls(world=world, micro=micro, accum=accum, block=block)


@dataclass
class EvalResult:
    loss: float  # main loss per target, every target hidden from the input (honest)
    baselines: dict[str, float]  # context-free baselines on the same targets (and constant ones)
    reference: str  # the baseline the verdict compares with
    count: int
    gain_se: float  # standard error of the per-target (reference - model) difference
    units: float  # total units (bases, characters) covered by the targets; 0 if not counted
    # every objective beside the main one, each on its own honest targets against its own baseline:
    # name -> {loss, baseline, gain, gain_se, targets} (from the objective's `component/NAME` outputs)
    components: dict[str, dict[str, float]] = field(default_factory=dict)
    # per-item rates such as cross-modal retrieval accuracy: name -> {value, chance, items}
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def per_unit_bits(self, nats: float) -> float:
        return nats * self.count / max(self.units, 1e-9) / math.log(2)


@dataclass
class TrainState:
    step: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    best_eval: float = float("inf")
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        objective: Objective,
        cfg: TrainConfig,
        data: TrainData,
        run_dir: str | Path,
        seed: int = 0,
        progress: bool = True,
    ):
        self.cfg, self.data, self.seed = cfg, data, seed
        self.run_dir = Path(run_dir)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and torch.cuda.is_available())
        self.acc = Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not torch.cuda.is_available())
        self.is_main = self.acc.is_main_process
        self.layout = Layout.derive(cfg, self.acc.num_processes, data.seq_len)
        if cfg.global_batch_tokens < data.seq_len and self.is_main:
            print(f"note: train.global_batch_tokens={cfg.global_batch_tokens} is below one block of {data.seq_len} "
                  f"tokens; each step uses {self.layout.global_seqs} block(s)", file=sys.stderr)
        if len(data.train) < self.layout.global_seqs:
            raise BiofmError(
                f"only {len(data.train)} training rows but a global batch needs "
                f"{self.layout.global_seqs}; lower train.global_batch_tokens or add data"
            )
        if len(data.eval) == 0:
            raise BiofmError("no held-out rows to evaluate on; raise data.val_fraction or add data")
        model = objective.model
        self.model = model
        self.components = dict(objective.components)
        self.main, self.reference = objective.main, objective.reference
        self.unit_name, self.loss_unit = objective.unit_name, objective.loss_unit
        self.constant_baselines = objective.constant_baselines()
        self._collate = objective.collate
        decay = [p for n, p in objective.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
        no_decay = [p for n, p in objective.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
        groups = [{"params": [p for p in decay if p.requires_grad], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in no_decay if p.requires_grad], "weight_decay": 0.0}]
        try:  # one fused kernel for the whole update (CUDA, and CPU since torch 2.4)
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=True)
        except (RuntimeError, TypeError):
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
        self._fsdp = _is_fsdp(self.acc)
        if self.acc.distributed_type == "DEEPSPEED":
            # DeepSpeed's engine steps inside backward() on its own accumulation count, which biofm's exact
            # per-global-batch normalisation does not drive; untested here, so refused rather than wrong.
            raise BiofmError("DeepSpeed is not supported by biofm's trainer; use FSDP for sharded training "
                             "(examples/accelerate/fsdp_8gpu.yaml)")
        if hasattr(objective, "sparse_top"):  # sharded layers must be called whole, so they gather their weights
            objective.sparse_top = cfg.sparse_top and not self._fsdp
        if cfg.compile:
            objective = torch.compile(objective)
        self.objective, self.optimizer = self.acc.prepare(objective, self.optimizer)
        self.device = self.acc.device
        self.state = TrainState()
        self._perm_cache: dict[int, np.ndarray] = {}
        self.progress = progress and self.is_main
        self.flops_per_token, self.peak_flops = _flops_per_token(model, self.layout.block), _peak_flops(self.device)

    @property
    def unwrapped(self) -> Objective:
        obj = self.acc.unwrap_model(self.objective)
        return getattr(obj, "_orig_mod", obj)  # torch.compile wraps the module once more

    # ---- data order: a pure function of (seed, sample number), hence exact resume ----------------
    def _dataset_index(self, sample: int) -> int:
        n = len(self.data.train)
        epoch, j = divmod(sample, n)
        perm = self._perm_cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            self._perm_cache = {epoch: perm}
        return int(perm[j])

    def _micro_batches(self, first_sample: int) -> list[np.ndarray]:
        """Global sample numbers of this process's micro-batches for the step starting at first_sample."""
        lay = self.layout
        per_rank = lay.micro * lay.accum
        start = first_sample + self.acc.process_index * per_rank
        samples = np.arange(start, start + per_rank)
        return [samples[i * lay.micro:(i + 1) * lay.micro] for i in range(lay.accum)]

    def _batch(self, rows: Any, keys: np.ndarray, honest: bool, seed: int) -> Batch:
        batch = self._collate(rows, keys, honest=honest, seed=seed)
        batch.tensors = {k: v.to(self.device, non_blocking=True) for k, v in batch.tensors.items()}
        return batch

    def _sum_all(self, value: torch.Tensor) -> torch.Tensor:
        return self.acc.reduce(value, reduction="sum") if self.acc.num_processes > 1 else value

    # ---- one optimizer step -----------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        cfg, lay = self.cfg, self.layout
        names = list(self.components)
        micro = self._micro_batches(self.state.samples_seen)
        batches = []
        for samples in micro:
            idx = np.array([self._dataset_index(int(s)) for s in samples])
            batches.append(self._batch(self.data.train[idx], samples, honest=False, seed=self.seed))
        local = [sum(b.counts.get(n, 0) for b in batches) for n in names] + [sum(b.tokens for b in batches)]
        counts = [float(c) for c in local]  # one process: no device round trip (no host-device sync)
        if self.acc.num_processes > 1:
            counts = self._sum_all(torch.tensor(local, device=self.device, dtype=torch.float64)).tolist()
        global_counts = {n: max(c, 1.0) for n, c in zip(names, counts[:-1], strict=True)}
        factor = lr_factor(self.state.step, schedule=cfg.schedule, warmup=cfg.warmup_steps,
                           total=cfg.steps, min_ratio=cfg.min_lr_ratio)
        lr = cfg.lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sums = torch.zeros(len(names), device=self.device, dtype=torch.float64)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            ctx = self.acc.no_sync(self.objective) if not last else contextlib.nullcontext()
            with ctx, self.acc.autocast():
                out = self.objective(**batch.tensors)
                # DDP averages gradients over processes, hence * world: each term is sum/global_count.
                loss = sum(self.components[n] * out[n] / global_counts[n] for n in names)
                self.acc.backward(loss * self.acc.num_processes)
            sums += torch.stack([out[n].detach().double() for n in names])
        # accelerate's clip knows FSDP shards and DeepSpeed; the norm is over the whole model either way
        grad_norm = self.acc.clip_grad_norm_(self.objective.parameters(),
                                             cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.samples_seen += lay.global_seqs
        self.state.tokens_seen += int(counts[-1])
        return {"sums": sums, "counts": global_counts, "lr": lr, "grad_norm": grad_norm, "tokens": int(counts[-1])}

    def weighted_loss(self, sums: torch.Tensor, counts: dict[str, float]) -> tuple[float, dict[str, float]]:
        """(sum of weight * mean loss over components, mean loss of each component) from summed values."""
        parts = {n: float(s) / max(counts[n], 1.0) for n, s in zip(self.components, sums.tolist(), strict=True)}
        return sum(self.components[n] * v for n, v in parts.items()), parts

    # ---- honest evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> EvalResult:
        self.objective.eval()
        n = min(len(self.data.eval), self.cfg.eval_max_blocks)
        mine = np.arange(self.acc.process_index, n, self.acc.num_processes)  # uneven split, no padding
        names: list[str] | None = None
        comps: list[str] = []
        metrics: list[str] = []
        totals = torch.zeros(0, dtype=torch.float64, device=self.device)
        bs = self.layout.micro * 2
        n_batches = math.ceil(n / (self.acc.num_processes * bs)) if n else 0
        for b in range(n_batches):  # every rank runs the same number of passes (FSDP needs that)
            idx = mine[b * bs:(b + 1) * bs]
            rows_idx = idx if len(idx) else np.arange(min(1, n))  # an idle rank scores nothing
            batch = self._batch(self.data.eval[rows_idx], EVAL_KEY_OFFSET + rows_idx, True, self.seed + 1)
            with self.acc.autocast():
                out = self.objective(**batch.tensors, per_token=True)
            loss = out["loss"].double()
            base = {k.split("/", 1)[1]: v.double() for k, v in out.items() if k.startswith("baseline/")}
            if names is None:  # the first batch names them: every rank scores the same objective
                names = sorted(base)
                comps = sorted(k.split("/", 1)[1] for k in out if k.startswith("component/"))
                metrics = sorted(k.split("/", 1)[1] for k in out if k.startswith("metric/"))
                totals = torch.zeros(4 + 3 * len(names) + 5 * len(comps) + 3 * len(metrics),
                                     dtype=torch.float64, device=self.device)
            weight = 1.0 if len(idx) else 0.0
            units = out["units"].double().sum() if "units" in out else torch.zeros((), dtype=torch.float64,
                                                                                   device=self.device)
            parts = [loss.sum(), torch.tensor(float(loss.numel()), device=self.device, dtype=torch.float64),
                     units, torch.zeros((), dtype=torch.float64, device=self.device)]
            for name in names:
                d = base[name] - loss
                parts += [base[name].sum(), d.sum(), (d * d).sum()]
            for name in comps:  # [n] per-target losses and their baselines
                c, cb = out[f"component/{name}"].double(), out[f"component_baseline/{name}"].double()
                d = cb - c
                parts += [c.sum(), cb.sum(), torch.tensor(float(c.numel()), device=self.device,
                                                          dtype=torch.float64), d.sum(), (d * d).sum()]
            for name in metrics:  # [n] per-item values (hits), and chance per item when the objective gives it
                v = out[f"metric/{name}"].double()
                chance = out.get(f"metric_chance/{name}")
                parts += [v.sum(), chance.double().sum() if chance is not None else v.sum() * float("nan"),
                          torch.tensor(float(v.numel()), device=self.device, dtype=torch.float64)]
            totals += weight * torch.stack(parts)
        totals = self._sum_all(totals)
        self.objective.train()
        values = totals.tolist()
        count = max(values[1], 1.0) if values else 1.0
        baselines = dict(self.constant_baselines)
        gain_se = 0.0
        for i, name in enumerate(names or []):
            b_sum, d, d2 = values[4 + 3 * i: 7 + 3 * i]
            baselines[name] = b_sum / count
            if name == self.reference:
                mean_d = d / count
                gain_se = math.sqrt(max(d2 / count - mean_d**2, 0.0) / count)
        at = 4 + 3 * len(names or [])
        components: dict[str, dict[str, float]] = {}
        for name in comps if names is not None else []:
            c, cb, n, d, d2 = values[at:at + 5]
            at += 5
            n = max(n, 1.0)
            components[name] = {"loss": c / n, "baseline": cb / n, "gain": d / n,
                                "gain_se": math.sqrt(max(d2 / n - (d / n) ** 2, 0.0) / n), "targets": int(n)}
        found: dict[str, dict[str, float]] = {}
        for name in metrics if names is not None else []:
            v, chance, n = values[at:at + 3]
            at += 3
            found[name] = {"value": v / max(n, 1.0), "chance": chance / max(n, 1.0) if math.isfinite(chance) else None,
                           "items": int(n)}
        return EvalResult(loss=(values[0] if values else float("nan")) / count, baselines=baselines,
                          reference=self.reference, count=int(count), gain_se=gain_se,
                          units=values[2] if values else 0.0, components=components, metrics=found)

    # ---- checkpoints -------------------------------------------------------------------------------
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def full_state(self) -> dict[str, torch.Tensor]:
        """The objective's whole state dict on rank 0 (FSDP shards gathered); every rank must call it."""
        return self.acc.get_state_dict(self.objective)

    def save_model(self, path: Path, state: dict[str, torch.Tensor] | None = None) -> None:
        self.unwrapped.save_pretrained(path, state_dict=state)

    def save_checkpoint(self) -> None:
        """`checkpoints/step-N/`: the model (a Hugging Face folder, gathered from shards), the optimizer state
        (gathered through accelerate under FSDP, so any process count resumes it), every process's RNGs
        (python, numpy, torch CPU and CUDA) and the trainer state with the data position.

        Every process writes into one temporary folder that rank 0 renames into place once all are done;
        `trainer_state.json` is written last, so a folder without it is never taken for a checkpoint."""
        acc = self.acc
        acc.wait_for_everyone()
        state = self.full_state()  # a collective under FSDP
        dest = self.checkpoint_dir() / f"step-{self.state.step}"
        tmp = self.checkpoint_dir() / f".{dest.name}.tmp-write"
        previous = self.latest_checkpoint()
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        try:
            self._save_optimizer(tmp)
            torch.save(rng_state(), tmp / f"rng-{acc.process_index}.pt")
            acc.wait_for_everyone()
            if self.is_main:
                self.save_model(tmp / "model", state)
                write_json(tmp / "trainer_state.json", {
                    "step": self.state.step, "samples_seen": self.state.samples_seen,
                    "tokens_seen": self.state.tokens_seen, "best_eval": self.state.best_eval,
                    "layout": vars(self.layout), "seed": self.seed, "world_size": acc.num_processes,
                })
                if dest.exists():  # the same step written again (a rerun of the last step): replace it whole
                    shutil.rmtree(dest)
                os.replace(tmp, dest)
        except (OSError, RuntimeError) as exc:
            if self.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            if not is_disk_full(exc):
                raise
            kept = f"{previous.name} is intact" if previous else "no earlier checkpoint exists"
            raise BiofmError(f"{dest}: no space to write the checkpoint (disk full or file-size limit); nothing "
                             f"half-written was kept and {kept}. Free space, then continue with --resume") from None
        if self.is_main:
            ckpts = self.complete_checkpoints()
            for old in ckpts[self.cfg.keep_checkpoints:]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _save_optimizer(self, folder: Path) -> None:
        if self._fsdp:  # every rank holds a shard: gather the full state on rank 0 (FULL_STATE_DICT)
            from accelerate.utils import save_fsdp_optimizer

            save_fsdp_optimizer(self.acc.state.fsdp_plugin, self.acc, self.optimizer, self.objective, str(folder))
        elif self.is_main:  # DDP / one process: every rank holds the same state
            torch.save(self.optimizer.state_dict(), folder / OPTIMIZER_FILE)

    def _load_optimizer(self, folder: Path) -> None:
        if self._fsdp:
            from accelerate.utils import load_fsdp_optimizer

            load_fsdp_optimizer(self.acc.state.fsdp_plugin, self.acc, self.optimizer, self.objective, str(folder))
            return
        # on CPU, so any process count and device reads it; load_state_dict moves it to the parameters
        self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True))

    def complete_checkpoints(self) -> list[Path]:
        """Checkpoints that were fully written (atomic folders), newest first."""
        ckpts = [p for p in self.checkpoint_dir().glob("step-*")
                 if (p / "trainer_state.json").exists() and p.name.split("-")[1].isdigit()]
        return sorted(ckpts, key=lambda p: int(p.name.split("-")[1]), reverse=True)

    def latest_checkpoint(self) -> Path | None:
        ckpts = self.complete_checkpoints()
        return ckpts[0] if ckpts else None

    def resume_latest(self) -> Path:
        """Load the newest checkpoint that reads back; an unreadable one is reported in one line and the
        previous complete one used instead."""
        ckpts = self.complete_checkpoints()
        if not ckpts:
            raise BiofmError(f"{self.run_dir}: --resume given but there is no checkpoint to resume from")
        for i, path in enumerate(ckpts):
            try:
                self.load_checkpoint(path)
                return path
            except BiofmError:
                raise
            except Exception as exc:  # torch / safetensors / json raise many kinds for a damaged file
                why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
                later = f"falling back to {ckpts[i + 1].name}" if i + 1 < len(ckpts) else "no older checkpoint is left"
                if self.is_main:
                    print(f"{path}: unreadable checkpoint ({type(exc).__name__}: {why}); {later}", file=sys.stderr)
        raise BiofmError(f"{self.checkpoint_dir()}: no checkpoint reads back; start over with --overwrite")

    def load_checkpoint(self, path: Path) -> None:
        state = json.loads((path / "trainer_state.json").read_text())
        if state.get("seed", self.seed) != self.seed:
            raise BiofmError(f"{path}: checkpoint was written with seed {state['seed']}, config says {self.seed}")
        self.unwrapped.load_weights(path / "model")
        self._load_optimizer(path)
        mine = path / f"rng-{self.acc.process_index}.pt"  # a new process count: the others take rank 0's
        set_rng_state(torch.load(mine if mine.exists() else path / "rng-0.pt", weights_only=True))
        self.state.step = int(state["step"])
        self.state.samples_seen = int(state["samples_seen"])
        self.state.tokens_seen = int(state["tokens_seen"])
        best = state.get("best_eval")  # null when written before the first evaluation (JSON has no inf)
        self.state.best_eval = float("inf") if best is None else float(best)

    # ---- the run ---------------------------------------------------------------------------------
    def fit(self, resumed: bool = False) -> dict[str, Any]:
        """Train to `cfg.steps`; `resumed`: a checkpoint was loaded (`resume_latest`), keep its metrics."""
        cfg = self.cfg
        metrics_path = self.run_dir / "metrics.jsonl"
        if resumed:
            if self.is_main and metrics_path.exists():  # drop rows logged after the checkpoint
                rows = [r for r in read_metrics(metrics_path) if r["step"] <= self.state.step]
                write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        elif self.is_main and metrics_path.exists():
            metrics_path.unlink()
        writer = _tensorboard(self.run_dir / "tensorboard", self.state.step) if self.is_main else None
        bar = _Progress(cfg.steps, self.state.step, enabled=self.progress)
        window_sums = torch.zeros(len(self.components), device=self.device, dtype=torch.float64)
        window_counts = dict.fromkeys(self.components, 0.0)
        window_tokens, window_start = 0, time.perf_counter()
        window_steps = 0
        run_start, run_tokens = time.perf_counter(), 0
        last_eval: EvalResult | None = None
        self.objective.train()
        try:
            while self.state.step < cfg.steps:
                out = self.train_step()
                window_sums += out["sums"]
                for name, c in out["counts"].items():
                    window_counts[name] += c
                window_tokens += out["tokens"]
                window_steps += 1
                run_tokens += out["tokens"]
                step = self.state.step
                row: dict[str, Any] | None = None
                if step % cfg.log_every == 0 or step == cfg.steps:
                    loss, parts = self.weighted_loss(self._sum_all(window_sums), window_counts)
                    if not math.isfinite(loss):
                        raise TrainingDiverged(
                            f"loss became {loss} at step {step}; training stopped. The last good checkpoint "
                            f"is kept in {self.checkpoint_dir()}. Try a lower train.lr, a longer "
                            f"train.warmup_steps or train.precision=fp32."
                        )
                    elapsed = time.perf_counter() - window_start
                    row = {"step": step, "tokens_seen": self.state.tokens_seen, "loss": loss, "lr": out["lr"],
                           "grad_norm": float(out["grad_norm"]), "tokens_per_s": window_tokens / max(elapsed, 1e-9)}
                    if len(parts) > 1:
                        row.update({f"loss_{n}": v for n, v in parts.items()})
                    if self.peak_flops:  # model FLOPs utilisation, counting every position computed
                        positions = window_steps * self.layout.global_seqs * self.layout.block
                        row["mfu"] = self.flops_per_token * positions / max(elapsed, 1e-9) / (
                            self.peak_flops * self.layout.world)
                    window_sums.zero_()
                    window_counts = dict.fromkeys(self.components, 0.0)
                    window_tokens, window_start = 0, time.perf_counter()
                    window_steps = 0
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    last_eval = self.evaluate()
                    row = row or {"step": step, "tokens_seen": self.state.tokens_seen, "lr": out["lr"]}
                    row.update(self._eval_fields(last_eval))
                    self.state.best_eval = min(self.state.best_eval, last_eval.loss)
                    window_start = time.perf_counter()  # evaluation time is not training throughput
                if row is not None and self.is_main:
                    _append_jsonl(metrics_path, row)
                    if writer is not None:
                        for key, value in row.items():
                            if key != "step" and isinstance(value, (int, float)):
                                writer.add_scalar(key, value, step)
                    bar.update(step, row)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        if last_eval is None:  # resumed a run that had already reached its last step
            last_eval = self.evaluate()
        wall = time.perf_counter() - run_start
        summary = {
            "params": sum(p.numel() for p in self.model.parameters()),
            "steps": self.state.step,
            "tokens_seen": self.state.tokens_seen,
            "objective": {"components": self.components, "main": self.main, "reference": self.reference,
                          "advice": list(self.unwrapped.advice)},
            "loss_unit": self.loss_unit,
            **self._eval_fields(last_eval, prefix="final_"),
            "tokens_per_s": run_tokens / max(wall, 1e-9),
            "train_seconds": wall,
            "global_batch_seqs": self.layout.global_seqs,
            "global_batch_tokens": self.layout.global_seqs * self.layout.block,
            "accumulation_steps": self.layout.accum,
            "micro_batch_size": self.layout.micro,
            "world_size": self.layout.world,
            "device": str(self.device),
        }
        return summary

    def _eval_fields(self, ev: EvalResult, prefix: str = "") -> dict[str, Any]:
        """Eval loss, every baseline, the gain over the reference baseline and bits per unit if counted."""
        out: dict[str, Any] = {f"{prefix}eval_loss": ev.loss, "eval_targets": ev.count,
                               "baseline_reference": ev.reference,
                               "eval_gain": ev.baselines.get(ev.reference, float("nan")) - ev.loss,
                               "eval_gain_se": ev.gain_se}
        out.update({f"baseline_{name}": value for name, value in ev.baselines.items()})
        if ev.components:
            out["components"] = ev.components
        if ev.metrics:
            out["metrics"] = ev.metrics
        if self.main == "clm":  # exp(total NLL / total predicted tokens), never a mean of batch perplexities
            out["perplexity"] = math.exp(min(ev.loss, 700.0))
            out["unigram_perplexity"] = math.exp(min(ev.baselines.get("unigram", float("nan")), 700.0))
        u = self.unit_name
        if u and ev.units:
            out[f"{prefix}eval_bits_per_{u}"] = ev.per_unit_bits(ev.loss)
            for name in ev.baselines:
                if name != "uniform":
                    out[f"baseline_{name}_bits_per_{u}"] = ev.per_unit_bits(ev.baselines[name])
        return out


def is_disk_full(exc: BaseException) -> bool:
    """A write that failed for lack of space (ENOSPC, EDQUOT) or a file-size limit (EFBIG), including
    torch.save's RuntimeError around those."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(s in text for s in (
        "No space left", "File too large", "file write failed", "inline_container", "Disk quota"))


OPTIMIZER_FILE = "optimizer.bin"  # the name accelerate's FSDP helpers use too


def rng_state() -> dict[str, Any]:
    """Every generator a training step can draw from, in types torch.load(weights_only=True) reads back."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_fsdp(acc: Accelerator) -> bool:
    """FSDP shards every layer: its weights exist whole only inside that layer's own forward, and each
    process holds a shard of the optimizer state."""
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.FSDP


def _flops_per_token(model: PreTrainedModel, seq_len: int) -> float:
    """Training FLOPs per token position, the standard count: 6N + 12·layers·hidden·seq_len (attention).

    N is the matmul weights (every Linear/Conv1D, so a head tied to the input embedding counts once
    and embedding lookups, token or position, do not). It counts every position through the whole
    model; biofm's masked LM computes the head, and with `sparse_top` the last layer, only at the
    masked positions, so that work is credited to the MFU without being done, as in BERT's own code.
    """
    from transformers.pytorch_utils import Conv1D

    cfg = model.config
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D)))
    return 6.0 * n + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
                   "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def _peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU (for MFU), or None on CPU / unknown devices."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()


def _tensorboard(log_dir: Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # an optional extra: metrics.jsonl holds the same numbers
        print("note: no TensorBoard events (tensorboard is not installed: pip install 'biofm[tensorboard]')",
              file=sys.stderr)
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step or None)


class _Progress:
    """A rich progress bar with loss, tokens/s and ETA; plain lines when not on a terminal."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled = enabled
        self.total = total
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                            TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn())
        self.task = self.bar.add_task("", total=total, completed=start)
        self.bar.start()
        self.plain = not self.bar.console.is_terminal

    def update(self, step: int, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        parts = []
        if "loss" in row:
            parts.append(f"loss {row['loss']:.4f}")
        if "eval_loss" in row:
            ref = row.get("baseline_reference", "unigram")
            parts.append(f"eval {row['eval_loss']:.4f} ({ref} {row.get(f'baseline_{ref}', float('nan')):.4f})")
        if "tokens_per_s" in row:
            parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
        self.bar.update(self.task, completed=step, description=" ".join(parts))
        if self.plain and os.environ.get("BIOFM_QUIET") != "1":
            self.bar.console.print(f"step {step}/{self.total} " + " ".join(parts))

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
