"""Text's part of `biofm evaluate`: sequence embeddings and fine-tuning, with TF-IDF baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from biofm.eval.sequence import embeddings, model_methods, tables

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig

__all__ = ["baselines", "embeddings", "model_methods", "tables"]


def baselines(cfg: EvaluateConfig) -> list[tuple[str, Any]]:
    from biofm.text.baselines import text_baseline_method

    return [(n, text_baseline_method(n, cfg.text_baselines)) for n in cfg.text_baselines.run]
