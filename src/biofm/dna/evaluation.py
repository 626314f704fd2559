"""DNA's part of `biofm evaluate`: sequence embeddings and fine-tuning, with the DNA baselines
(logistic regression on raw tokens, k-mer counts + logistic regression / XGBoost, a CNN from scratch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from biofm.eval.sequence import embeddings, model_methods, tables

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig

__all__ = ["baselines", "embeddings", "model_methods", "tables"]


def baselines(cfg: EvaluateConfig) -> list[tuple[str, Any]]:
    from biofm.dna.baselines import BASELINES

    return [(n, lambda t, f, s, n=n: BASELINES[n](t, f, s, cfg.baselines)) for n in cfg.baselines.run]
