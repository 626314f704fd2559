"""Parameter-efficient fine-tuning (IA3, as Nucleotide Transformer, and LoRA) through `peft`.

Per fold: a fresh copy of the pretrained model gets a classification/regression head, the adapter
and the head are trained on the fold's training rows, and the epoch that scores best on a validation
split carved from those rows predicts the fold's test rows.

Guards against the silent failure of small, imbalanced tasks (every fold predicting one class):
the classification loss is class-weighted (`class_weight="balanced"`: n / (C · n_c) from the fit rows,
as scikit-learn's), early stopping follows the task's headline metric on the validation rows (MCC
or Pearson; the loss breaks ties) rather than the loss alone, and a fold whose predictions are a single
class is flagged by the evaluation (see biofm.eval.evaluate).

Cost: before training, a few timed steps give an estimate (rows × epochs × folds at the measured rate),
printed; with `time_budget_s` the epochs, then the training rows per fold, are cut to fit, with a note.
The folds are never cut: every method keeps the shared folds, so comparisons stay paired.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from peft import IA3Config, LoraConfig, TaskType, get_peft_model
from pydantic import Field, PositiveInt
from torch.nn import functional as F
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase

from biofm.config import Schema
from biofm.eval.batching import pad_batches
from biofm.eval.explain import attribute_finetuned
from biofm.eval.folds import validation_split
from biofm.eval.metrics import HEADLINE, fold_metrics
from biofm.eval.types import Fold, FoldPrediction, Task
from biofm.models.device import autocast, current_device
from biofm.models.load import quiet_transformers
from biofm.progress import tracked

# Which linear layers each architecture's adapters attach to. IA3 rescales keys/values and the
# feed-forward activations (NT's recipe); LoRA adapts the attention and feed-forward projections.
TARGETS = {
    "modernbert": {"ia3": (["Wqkv", "mlp.Wo"], ["mlp.Wo"]), "lora": ["Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo"],
                   "head": ["classifier", "head"]},
    "esm": {"ia3": (["key", "value", "output.dense"], ["output.dense"]), "lora": ["query", "key", "value", "dense"],
            "head": ["classifier"]},
    "bert": {"ia3": (["key", "value", "output.dense"], ["output.dense"]), "lora": ["query", "key", "value", "dense"],
             "head": ["classifier"]},
    "gpt2": {"ia3": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]), "lora": ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"],
             "head": ["score"]},
    "llama": {"ia3": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
              "lora": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "head": ["score"]},
}


class FinetuneConfig(Schema):
    methods: list[Literal["ia3", "lora"]] = Field(default_factory=lambda: ["ia3", "lora"])
    epochs: PositiveInt = 10
    patience: PositiveInt = 2
    batch_size: PositiveInt = 32
    lr_ia3: float = Field(3e-3, gt=0)
    lr_lora: float = Field(5e-4, gt=0)
    lora_r: PositiveInt = 8
    lora_alpha: PositiveInt = 16
    weight_decay: float = Field(0.0, ge=0)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    max_train_examples: int | None = Field(None, description="subsample each fold's training rows (speed)")
    class_weight: Literal["balanced", "none"] = Field(
        "balanced", description="classification loss weights: balanced = n / (C * n_c) over the fit rows, so a "
                                "rare class is not ignored; none = plain cross-entropy")
    time_budget_s: float | None = Field(
        None, gt=0, description="seconds per method (all folds); above the estimate, epochs and then training "
                                "rows per fold are reduced, with a note (folds are never reduced)")


def _adapter(method: str, model_type: str, cfg: FinetuneConfig):
    t = TARGETS.get(model_type)
    if t is None:
        raise ValueError(f"fine-tuning of model type {model_type!r} is not supported")
    if method == "ia3":
        targets, ff = t["ia3"]
        return IA3Config(task_type=TaskType.SEQ_CLS, target_modules=targets, feedforward_modules=ff,
                         modules_to_save=t["head"])
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                      target_modules=t["lora"], modules_to_save=t["head"])


def _loss(logits: torch.Tensor, y: torch.Tensor, task: Task, weight: torch.Tensor | None = None) -> torch.Tensor:
    logits = logits.float()  # summed in fp32 (the logits are bf16 under CUDA autocast)
    if task.type == "classification":
        return F.cross_entropy(logits, y, weight=weight, reduction="sum")
    return F.mse_loss(logits.squeeze(-1), y, reduction="sum")


def balanced_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """n / (C · n_c) per class (scikit-learn's 'balanced'); a class absent from `y` gets weight 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


def plan_budget(n_fit: int, epochs: int, n_folds: int, seconds_per_row: float, budget_s: float | None
                ) -> tuple[int, int | None, str | None]:
    """(epochs, max rows per fold or None, note or None) so that rows × epochs × folds × rate fits the budget."""
    need = n_fit * epochs * n_folds * seconds_per_row
    if budget_s is None or need <= budget_s:
        return epochs, None, None
    fit_epochs = int(budget_s / (n_fit * n_folds * seconds_per_row) + 1e-9)
    if fit_epochs >= 1:
        return fit_epochs, None, f"time budget {budget_s:.0f}s: epochs cut from {epochs} to {fit_epochs}"
    rows = max(16, int(budget_s / (n_folds * seconds_per_row) + 1e-9))
    return 1, rows, (f"time budget {budget_s:.0f}s: 1 epoch (was {epochs}) on at most {rows} training rows per "
                     f"fold (of {n_fit})")


def finetune(task: Task, folds: list[Fold], seed: int, *, model_dir: Path, tokenizer: PreTrainedTokenizerBase,
             method: str, cfg: FinetuneConfig, max_tokens: int,
             log: Callable[[str], None] | None = None) -> list[FoldPrediction]:
    ids = [tokenizer(s, truncation=True, max_length=max_tokens)["input_ids"] for s in task.inputs]
    pad = tokenizer.pad_token_id
    n_labels = task.n_classes if task.type == "classification" else 1
    torch.manual_seed(seed)  # the new classification head's initialisation: the same every run
    with quiet_transformers():  # its "newly initialized" report is expected: the classifier head is new
        base = AutoModelForSequenceClassification.from_pretrained(
            # pad_token_id: a causal classifier finds each row's last real token by it (GPT-2 publishes none)
            model_dir, num_labels=n_labels, use_safetensors=True, pad_token_id=tokenizer.pad_token_id,
            problem_type="single_label_classification" if task.type == "classification" else "regression"
        ).to(current_device())  # fine-tuning runs where the evaluation runs (`--device`)
    labels = torch.as_tensor(task.labels, dtype=torch.long if task.type == "classification" else torch.float32
                             ).to(base.device)
    lr = cfg.lr_ia3 if method == "ia3" else cfg.lr_lora
    splits = [validation_split(tr, task, cfg.val_fraction, seed + k, min_rows=2) for k, (tr, _) in enumerate(folds)]
    n_fit = int(np.mean([len(f) for f, _ in splits]))
    if cfg.max_train_examples:
        n_fit = min(n_fit, cfg.max_train_examples)
    rate = _seconds_per_row(base, method, cfg, ids, splits[0][0], labels, task, pad, lr)
    epochs, max_rows, note = plan_budget(n_fit, cfg.epochs, len(folds), rate, cfg.time_budget_s)
    if log is not None:
        log(f"finetune-{method}: estimated at most {_minutes(n_fit * cfg.epochs * len(folds) * rate)} "
            f"({n_fit} rows x {cfg.epochs} epochs x {len(folds)} folds at {1 / rate:.0f} rows/s)")
        if note:
            log(f"finetune-{method}: {note}")
    cap = min(x for x in (cfg.max_train_examples, max_rows) if x) if (cfg.max_train_examples or max_rows) else None
    headline = HEADLINE[task.type]
    out = []
    fold_pairs = list(zip(folds, splits, strict=True))
    for k, ((_train_idx, test_idx), (fit_idx, val_idx)) in enumerate(tracked(fold_pairs, f"finetune-{method}",
                                                                              unit="folds")):
        torch.manual_seed(seed + k)
        rng = np.random.default_rng([seed, k])
        if cap and len(fit_idx) > cap:
            fit_idx = np.sort(rng.choice(fit_idx, cap, replace=False))
        weight = None
        if task.type == "classification" and cfg.class_weight == "balanced":
            weight = balanced_weights(task.labels[fit_idx], n_labels).to(base.device)
        model = get_peft_model(copy.deepcopy(base), _adapter(method, base.config.model_type, cfg))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                weight_decay=cfg.weight_decay)
        best, best_state, bad = (-math.inf, math.inf), None, 0
        for _epoch in range(epochs):
            model.train()
            for part, x, m in pad_batches(ids, rng.permutation(fit_idx), pad, cfg.batch_size):
                with autocast(x.device):
                    logits = model(input_ids=x, attention_mask=m).logits
                loss = _loss(logits, labels[part], task, weight) / len(part)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            # select on the headline metric of the validation rows; the (weighted) loss breaks ties
            pred = _predict(model, ids, val_idx, task, pad, cfg.batch_size, k)
            score = fold_metrics(task, pred)[headline]
            val_loss = _evaluate_loss(model, ids, val_idx, labels, task, pad, cfg.batch_size, weight)
            key = (-math.inf if math.isnan(score) else score, val_loss)
            if key[0] > best[0] + 1e-9 or (key[0] >= best[0] - 1e-9 and key[1] < best[1] - 1e-6):
                best, bad = key, 0
                best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state, strict=False)
        out.append(_predict(model, ids, test_idx, task, pad, cfg.batch_size, k))
        if k == len(folds) - 1:  # per-position attributions of the last fold's model, when the evaluation asks
            attribute_finetuned(task, model, tokenizer, out[-1], max_tokens, f"finetune-{method}", k)
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _seconds_per_row(base, method: str, cfg: FinetuneConfig, ids, fit_idx: np.ndarray, labels: torch.Tensor,
                     task: Task, pad: int, lr: float, steps: int = 3) -> float:
    """Training seconds per row, from a few timed steps on a throwaway copy (the first step, which pays
    for allocation, is not timed)."""
    model = get_peft_model(copy.deepcopy(base), _adapter(method, base.config.model_type, cfg))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    rows, t0 = 0, 0.0
    batches = list(pad_batches(ids, fit_idx[: cfg.batch_size * (steps + 1)], pad, cfg.batch_size))
    for i, (part, x, m) in enumerate(batches):
        if i == 1:
            t0 = time.perf_counter()
        with autocast(x.device):
            logits = model(input_ids=x, attention_mask=m).logits
        loss = _loss(logits, labels[part], task) / len(part)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rows += len(part) if i >= 1 else 0
    if rows == 0:
        return 1e-3
    # validation and test predictions (forward passes over ~30% as many rows) add about a tenth
    return (time.perf_counter() - t0) / rows * 1.1


@torch.no_grad()
def _evaluate_loss(model, ids, idx, labels, task, pad, size, weight=None) -> float:
    model.eval()
    total = 0.0
    for part, x, m in pad_batches(ids, idx, pad, size):
        with autocast(x.device):
            logits = model(input_ids=x, attention_mask=m).logits
        total += float(_loss(logits, labels[part], task, weight))
    return total / max(len(idx), 1)


@torch.no_grad()
def _predict(model, ids, idx, task, pad, size, fold) -> FoldPrediction:
    model.eval()
    parts = []
    for _, x, m in pad_batches(ids, idx, pad, size):
        with autocast(x.device):
            parts.append(model(input_ids=x, attention_mask=m).logits.float().cpu())
    logits = torch.cat(parts)
    if task.type == "classification":
        proba = logits.softmax(-1).numpy()
        return FoldPrediction(fold, idx, proba.argmax(1), proba)
    return FoldPrediction(fold, idx, logits.squeeze(-1).numpy())
