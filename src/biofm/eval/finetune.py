"""Parameter-efficient fine-tuning (IA3, as Nucleotide Transformer, and LoRA) through `peft`.

Per fold: a fresh copy of the pretrained model gets a classification/regression head, the adapter
and the head are trained on the fold's training rows with early stopping on a validation split
carved from those rows, and the best state predicts the fold's test rows.
"""

from __future__ import annotations

import copy
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
from biofm.eval.folds import validation_split
from biofm.eval.types import Fold, FoldPrediction, Task

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


def _loss(logits: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    if task.type == "classification":
        return F.cross_entropy(logits, y, reduction="sum")
    return F.mse_loss(logits.squeeze(-1), y, reduction="sum")


def finetune(task: Task, folds: list[Fold], seed: int, *, model_dir: Path, tokenizer: PreTrainedTokenizerBase,
             method: str, cfg: FinetuneConfig, max_tokens: int) -> list[FoldPrediction]:
    ids = [tokenizer(s, truncation=True, max_length=max_tokens)["input_ids"] for s in task.inputs]
    pad = tokenizer.pad_token_id
    n_labels = task.n_classes if task.type == "classification" else 1
    torch.manual_seed(seed)  # the new classification head's initialisation: the same every run
    base = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=n_labels, use_safetensors=True,
        problem_type="single_label_classification" if task.type == "classification" else "regression")
    labels = torch.as_tensor(task.labels, dtype=torch.long if task.type == "classification" else torch.float32)
    lr = cfg.lr_ia3 if method == "ia3" else cfg.lr_lora
    out = []
    for k, (train_idx, test_idx) in enumerate(folds):
        torch.manual_seed(seed + k)
        rng = np.random.default_rng([seed, k])
        fit_idx, val_idx = validation_split(train_idx, task, cfg.val_fraction, seed + k, min_rows=2)
        if cfg.max_train_examples and len(fit_idx) > cfg.max_train_examples:
            fit_idx = np.sort(rng.choice(fit_idx, cfg.max_train_examples, replace=False))
        model = get_peft_model(copy.deepcopy(base), _adapter(method, base.config.model_type, cfg))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                weight_decay=cfg.weight_decay)
        best, best_state, bad = float("inf"), None, 0
        for _epoch in range(cfg.epochs):
            model.train()
            for part, x, m in pad_batches(ids, rng.permutation(fit_idx), pad, cfg.batch_size):
                loss = _loss(model(input_ids=x, attention_mask=m).logits, labels[part], task) / len(part)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            val = _evaluate_loss(model, ids, val_idx, labels, task, pad, cfg.batch_size)
            if val < best - 1e-6:
                best, bad = val, 0
                best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state, strict=False)
        out.append(_predict(model, ids, test_idx, task, pad, cfg.batch_size, k))
    return out


@torch.no_grad()
def _evaluate_loss(model, ids, idx, labels, task, pad, size) -> float:
    model.eval()
    total = 0.0
    for part, x, m in pad_batches(ids, idx, pad, size):
        total += float(_loss(model(input_ids=x, attention_mask=m).logits, labels[part], task))
    return total / max(len(idx), 1)


@torch.no_grad()
def _predict(model, ids, idx, task, pad, size, fold) -> FoldPrediction:
    model.eval()
    logits = torch.cat([model(input_ids=x, attention_mask=m).logits for _, x, m in pad_batches(ids, idx, pad, size)])
    if task.type == "classification":
        proba = logits.float().softmax(-1).numpy()
        return FoldPrediction(fold, idx, proba.argmax(1), proba)
    return FoldPrediction(fold, idx, logits.float().squeeze(-1).numpy())
