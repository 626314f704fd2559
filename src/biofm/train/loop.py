"""The shared pretraining loop: one file, readable top to bottom.

It knows nothing of DNA, cells or text: it receives fixed-length blocks of token ids, a masking
spec and the baselines' token log-probabilities. It owns the numerics the Hugging Face Trainer has
got wrong before: the loss of a step is sum(NLL) / (target tokens in the whole global batch, over
accumulation steps and processes); evaluation sums NLL and counts across processes; the data
position is stored in each checkpoint so a resumed run sees exactly the batches it would have seen.
Runs unchanged under `python`, `torchrun` and `accelerate launch` (accelerate picks up the launcher).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from transformers import PreTrainedModel

from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json, write_text
from biofm.train.config import TrainConfig
from biofm.train.masking import MaskSpec, mask_batch
from biofm.train.objectives import MaskedLMObjective
from biofm.train.schedule import lr_factor

EVAL_KEY_OFFSET = 1 << 40  # eval examples are keyed apart from training samples


class TrainingDiverged(BiofmError):
    exit_code = 3


@dataclass
class TrainData:
    """What the trainer needs from a modality: token blocks and how to score them."""

    train_ids: np.ndarray  # [N, L] token ids, may be a read-only memory map
    eval_ids: np.ndarray  # [M, L]
    mask: MaskSpec
    pad_id: int
    unigram_logp: np.ndarray  # [V] log-probabilities of the training tokens' frequencies
    n_real_tokens: int  # tokens a target can be: log of this is the uniform baseline
    token_units: np.ndarray | None = None  # [V] units per token (bases, characters) for bits/unit
    unit_name: str = "base"


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
    loss: float  # nats per target token, every target replaced by <mask>
    unigram: float  # nats per target token of the unigram baseline on the same targets
    count: int
    gain_se: float  # standard error of the per-token (unigram - model) difference
    units: float  # total units (bases) covered by the targets

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
        model: PreTrainedModel,
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
        self.layout = Layout.derive(cfg, self.acc.num_processes, data.train_ids.shape[1])
        if len(data.train_ids) < self.layout.global_seqs:
            raise BiofmError(
                f"only {len(data.train_ids)} training blocks but a global batch needs "
                f"{self.layout.global_seqs}; lower train.global_batch_tokens or add data"
            )
        if len(data.eval_ids) == 0:
            raise BiofmError("no held-out blocks to evaluate on; raise data.val_fraction or add data")
        self.model = model
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
        fused = torch.cuda.is_available()
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused,
        )
        objective = MaskedLMObjective(model, torch.as_tensor(data.mask.random_ids, dtype=torch.long))
        if cfg.compile:
            objective = torch.compile(objective)
        self.objective, self.optimizer = self.acc.prepare(objective, self.optimizer)
        self.device = self.acc.device
        self.state = TrainState()
        self._perm_cache: dict[int, np.ndarray] = {}
        self.progress = progress and self.is_main
        self.unigram_logp = torch.as_tensor(data.unigram_logp, dtype=torch.float32, device=self.device)
        self.flops_per_token, self.peak_flops = _flops_per_token(model, self.layout.block), _peak_flops(self.device)
        self.units = (
            torch.as_tensor(data.token_units, dtype=torch.float32, device=self.device)
            if data.token_units is not None else None
        )

    # ---- data order: a pure function of (seed, sample number), hence exact resume ----------------
    def _dataset_index(self, sample: int) -> int:
        n = len(self.data.train_ids)
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

    def _to_device(self, ids: np.ndarray, keys: np.ndarray, honest: bool, seed: int):
        inputs, selected = mask_batch(ids, keys, seed, self.data.mask, honest=honest)
        ids_t = torch.from_numpy(ids.astype(np.int64))
        batch = {
            "input_ids": torch.from_numpy(inputs.astype(np.int64)).to(self.device, non_blocking=True),
            "attention_mask": torch.from_numpy(ids != self.data.pad_id).to(self.device, non_blocking=True),
            "selected": torch.from_numpy(selected).to(self.device, non_blocking=True),
        }
        batch["targets"] = ids_t[torch.from_numpy(selected)].to(self.device, non_blocking=True)
        return batch

    def _sum_all(self, value: torch.Tensor) -> torch.Tensor:
        return self.acc.reduce(value, reduction="sum") if self.acc.num_processes > 1 else value

    # ---- one optimizer step -----------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        cfg, lay = self.cfg, self.layout
        micro = self._micro_batches(self.state.samples_seen)
        batches = []
        for samples in micro:
            idx = np.array([self._dataset_index(int(s)) for s in samples])
            ids = np.asarray(self.data.train_ids[idx])
            batches.append(self._to_device(ids, samples, honest=False, seed=self.seed))
        local_count = sum(int(b["targets"].numel()) for b in batches)
        local_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        counts = self._sum_all(torch.tensor([local_count, local_tokens], device=self.device, dtype=torch.float64))
        global_count = max(counts[0].item(), 1.0)
        factor = lr_factor(self.state.step, schedule=cfg.schedule, warmup=cfg.warmup_steps,
                           total=cfg.steps, min_ratio=cfg.min_lr_ratio)
        lr = cfg.lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            ctx = self.acc.no_sync(self.objective) if not last else contextlib.nullcontext()
            with ctx, self.acc.autocast():
                nll = self.objective(**batch)
                # DDP averages gradients over processes, hence * world: the result is sum/global_count.
                self.acc.backward(nll * (self.acc.num_processes / global_count))
            loss_sum += nll.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.objective.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.samples_seen += lay.global_seqs
        self.state.tokens_seen += int(counts[1].item())
        return {"loss_sum": loss_sum, "count": global_count, "lr": lr, "grad_norm": grad_norm,
                "tokens": int(counts[1].item())}

    # ---- honest evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> EvalResult:
        self.objective.eval()
        n = min(len(self.data.eval_ids), self.cfg.eval_max_blocks)
        mine = np.arange(self.acc.process_index, n, self.acc.num_processes)  # uneven split, no padding
        totals = torch.zeros(5, dtype=torch.float64, device=self.device)  # nll, uni, count, d, d^2
        units = torch.zeros((), dtype=torch.float64, device=self.device)
        bs = self.layout.micro * 2
        for i in range(0, len(mine), bs):
            idx = mine[i:i + bs]
            batch = self._to_device(np.asarray(self.data.eval_ids[idx]), EVAL_KEY_OFFSET + idx, True,
                                    self.seed + 1)
            with self.acc.autocast():
                nll = self.objective(**batch, per_token=True).double()
            uni = -self.unigram_logp[batch["targets"]].double()
            d = uni - nll
            totals += torch.stack([nll.sum(), uni.sum(), torch.tensor(float(nll.numel()), device=self.device,
                                   dtype=torch.float64), d.sum(), (d * d).sum()])
            if self.units is not None:
                units += self.units[batch["targets"]].double().sum()
        totals = self._sum_all(totals)
        units = self._sum_all(units)
        self.objective.train()
        nll, uni, count, d, d2 = (float(x) for x in totals.tolist())
        count = max(count, 1.0)
        mean_d = d / count
        var = max(d2 / count - mean_d**2, 0.0)
        return EvalResult(loss=nll / count, unigram=uni / count, count=int(count),
                          gain_se=math.sqrt(var / count), units=float(units) or count)

    # ---- checkpoints -------------------------------------------------------------------------------
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def save_checkpoint(self) -> None:
        self.acc.wait_for_everyone()
        if self.is_main:
            dest = self.checkpoint_dir() / f"step-{self.state.step}"
            with atomic_path(dest, is_dir=True) as tmp:
                self.acc.unwrap_model(self.objective).model.save_pretrained(tmp / "model")
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
                torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
                write_json(tmp / "trainer_state.json", {
                    "step": self.state.step, "samples_seen": self.state.samples_seen,
                    "tokens_seen": self.state.tokens_seen, "best_eval": self.state.best_eval,
                    "layout": vars(self.layout), "seed": self.seed,
                })
            ckpts = sorted(self.checkpoint_dir().glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
            for old in ckpts[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()

    def latest_checkpoint(self) -> Path | None:
        ckpts = [p for p in self.checkpoint_dir().glob("step-*") if (p / "trainer_state.json").exists()]
        return max(ckpts, key=lambda p: int(p.name.split("-")[1])) if ckpts else None

    def load_checkpoint(self, path: Path) -> None:
        state = json.loads((path / "trainer_state.json").read_text())
        weights = load_file(str(path / "model" / "model.safetensors"))
        model = self.acc.unwrap_model(self.objective).model
        model.load_state_dict(weights, strict=False)
        opt = torch.load(path / "optimizer.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(opt)
        rng = torch.load(path / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["torch"])
        self.state.step = state["step"]
        self.state.samples_seen = state["samples_seen"]
        self.state.tokens_seen = state["tokens_seen"]
        self.state.best_eval = state.get("best_eval", float("inf"))
        if state.get("seed", self.seed) != self.seed:
            raise BiofmError(f"{path}: checkpoint was written with seed {state['seed']}, config says {self.seed}")

    # ---- the run ---------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume:
            ckpt = self.latest_checkpoint()
            if ckpt is None:
                raise BiofmError(f"{self.run_dir}: --resume given but there is no checkpoint to resume from")
            self.load_checkpoint(ckpt)
            if self.is_main and metrics_path.exists():  # drop rows logged after the checkpoint
                rows = [r for r in _read_jsonl(metrics_path) if r["step"] <= self.state.step]
                write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        elif self.is_main and metrics_path.exists():
            metrics_path.unlink()
        writer = _tensorboard(self.run_dir / "tensorboard", self.state.step) if self.is_main else None
        bar = _Progress(cfg.steps, self.state.step, enabled=self.progress)
        window_loss = torch.zeros((), device=self.device, dtype=torch.float64)
        window_count, window_tokens, window_start = 0.0, 0, time.perf_counter()
        window_steps = 0
        run_start, run_tokens = time.perf_counter(), 0
        last_eval: EvalResult | None = None
        self.objective.train()
        try:
            while self.state.step < cfg.steps:
                out = self.train_step()
                window_loss += out["loss_sum"].double()
                window_count += out["count"]
                window_tokens += out["tokens"]
                window_steps += 1
                run_tokens += out["tokens"]
                step = self.state.step
                row: dict[str, Any] | None = None
                if step % cfg.log_every == 0 or step == cfg.steps:
                    loss = self._sum_all(window_loss).item() / max(window_count, 1.0)
                    if not math.isfinite(loss):
                        raise TrainingDiverged(
                            f"loss became {loss} at step {step}; training stopped. The last good checkpoint "
                            f"is kept in {self.checkpoint_dir()}. Try a lower train.lr, a longer "
                            f"train.warmup_steps or train.precision=fp32."
                        )
                    elapsed = time.perf_counter() - window_start
                    row = {"step": step, "tokens_seen": self.state.tokens_seen, "loss": loss, "lr": out["lr"],
                           "grad_norm": float(out["grad_norm"]), "tokens_per_s": window_tokens / max(elapsed, 1e-9)}
                    if self.peak_flops:  # model FLOPs utilisation, counting every position computed
                        positions = window_steps * self.layout.global_seqs * self.layout.block
                        row["mfu"] = self.flops_per_token * positions / max(elapsed, 1e-9) / (
                            self.peak_flops * self.layout.world)
                    window_loss.zero_()
                    window_count, window_tokens, window_start = 0.0, 0, time.perf_counter()
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
        model = self.acc.unwrap_model(self.objective).model
        return {
            "params": sum(p.numel() for p in model.parameters()),
            "steps": self.state.step,
            "tokens_seen": self.state.tokens_seen,
            "final_eval_loss": last_eval.loss,
            "baseline_uniform": math.log(self.data.n_real_tokens),
            "baseline_unigram": last_eval.unigram,
            "eval_gain_nats": last_eval.unigram - last_eval.loss,
            "eval_gain_se": last_eval.gain_se,
            "eval_targets": last_eval.count,
            f"final_eval_bits_per_{self.data.unit_name}": last_eval.per_unit_bits(last_eval.loss),
            f"baseline_unigram_bits_per_{self.data.unit_name}": last_eval.per_unit_bits(last_eval.unigram),
            "tokens_per_s": run_tokens / max(wall, 1e-9),
            "train_seconds": wall,
            "global_batch_seqs": self.layout.global_seqs,
            "global_batch_tokens": self.layout.global_seqs * self.layout.block,
            "accumulation_steps": self.layout.accum,
            "micro_batch_size": self.layout.micro,
            "world_size": self.layout.world,
            "device": str(self.device),
        }

    def _eval_fields(self, ev: EvalResult) -> dict[str, Any]:
        u = self.data.unit_name
        return {"eval_loss": ev.loss, "baseline_unigram": ev.unigram,
                "baseline_uniform": math.log(self.data.n_real_tokens),
                f"eval_bits_per_{u}": ev.per_unit_bits(ev.loss),
                f"unigram_bits_per_{u}": ev.per_unit_bits(ev.unigram), "eval_gain_se": ev.gain_se}


def _flops_per_token(model: PreTrainedModel, seq_len: int) -> float:
    """Training FLOPs per token position: 6N (non-embedding weights) + 12·layers·hidden·seq_len (attention)."""
    cfg = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
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


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tensorboard(log_dir: Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency
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
            parts.append(f"eval {row['eval_loss']:.4f} (unigram {row['baseline_unigram']:.4f})")
        if "tokens_per_s" in row:
            parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
        self.bar.update(self.task, completed=step, description=" ".join(parts))
        if self.plain and os.environ.get("BIOFM_QUIET") != "1":
            self.bar.console.print(f"step {step}/{self.total} " + " ".join(parts))

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
