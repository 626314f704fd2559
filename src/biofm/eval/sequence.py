"""Evaluation hooks shared by the sequence modalities (DNA, text): token embeddings and fine-tuning.

A modality's evaluation module (`biofm/<modality>/evaluation.py`) provides four functions that
`biofm.eval.evaluate` calls without knowing the modality:
- `embeddings(task, cfg, model_dir, model, tok)` -> {pooling: [n, layers, d]};
- `model_methods(task, folds, emb, cfg, model_dir, model, tok)` -> (name, kind, run) beyond the
  shared layer probes, where `run()` returns fold predictions;
- `baselines(cfg)` -> (name, Method) of the modality's baselines;
- `tables(task, cfg, emb)` -> extra result tables ({"name", "title", "rows"}) shown in the report.
DNA and text differ only in their baselines, so they take the other three from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biofm.errors import BiofmError
from biofm.eval.types import Fold, FoldPrediction, Task

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig


def check_context(inputs: list[str], source: object, tok, max_tokens: int, long_mode: str,
                  how: str = "add `long_sequences: truncate` or `long_sequences: windows` to the task file") -> None:
    """Inputs longer than the model's context are an error unless the caller says how to cut them (`how`
    tells the user where): `truncate` keeps the first window, `windows` averages non-overlapping ones."""
    if long_mode != "error":
        return
    lengths = [len(tok(x, add_special_tokens=False)["input_ids"]) for x in inputs]
    limit = max_tokens - 1  # <cls>
    n_long = sum(n > limit for n in lengths)
    if n_long:
        raise BiofmError(
            f"{source}: {n_long} of {len(lengths)} sequences are longer than the model's context "
            f"({limit} tokens; the longest has {max(lengths)}); {how}"
        )


def _max_tokens(model) -> int:
    """Tokens per input, specials included (ESM / RoBERTa reserve pad_token_id + 1 positions: NT-v1 holds 1,000)."""
    from biofm.models.published import context_length

    return context_length(model.config)


def embeddings(task: Task, cfg: EvaluateConfig, model_dir: Path, model, tok) -> dict[str, np.ndarray]:
    from biofm.eval.embeddings import cached_embeddings

    long_mode = task.meta.get("long_sequences") or "error"
    check_context(list(task.inputs), task.source, tok, _max_tokens(model), long_mode)
    return cached_embeddings(model, tok, model_dir, list(task.inputs), max_tokens=_max_tokens(model),
                             long_mode=long_mode, batch_size=cfg.embed_batch_size, cache_dir=cfg.cache_dir)


def model_methods(task: Task, folds: list[Fold], emb: dict[str, np.ndarray], cfg: EvaluateConfig,
                  model_dir: Path, model, tok) -> Iterator[tuple[str, str, Callable[[], list[FoldPrediction]]]]:
    """Parameter-efficient fine-tuning (IA3, LoRA) of the whole model, per fold."""
    from biofm.eval.evaluate import console
    from biofm.eval.finetune import finetune

    for method in cfg.finetune.methods:
        yield (f"finetune-{method}", "finetune",
               lambda method=method: finetune(task, folds, cfg.seed, model_dir=model_dir, tokenizer=tok,
                                              method=method, cfg=cfg.finetune, max_tokens=_max_tokens(model),
                                              log=lambda msg: console.print(f"[{task.name}] {msg}")))


def tables(task: Task, cfg: EvaluateConfig, emb: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
    return []
