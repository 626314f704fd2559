"""Baselines a text foundation model has to beat: TF-IDF with a tuned linear model.

Word uni- and bigram TF-IDF (sublinear term frequency, terms in at least `min_df` training texts)
feeding a class-balanced logistic regression -- Ridge for regression tasks -- is the classic strong
baseline for short-document classification. Like the DNA baselines each one is a `Method`: per
fold, the vectoriser's vocabulary and IDF weights and the regularisation strength (chosen by an
inner cross-validation over a small grid) are all fitted on that fold's training rows only, so
nothing about its test texts leaks into training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt, field_validator

from biofm.config import Schema
from biofm.eval.baselines import check_known, method_from
from biofm.eval.fit import check_folds, fit_predict
from biofm.eval.types import Fold, FoldPrediction, Method, Task

__all__ = ["TEXT_BASELINES", "TextBaselineConfig", "text_baseline_method", "tfidf_logreg"]

C_GRID: tuple[float, ...] = (0.1, 1.0, 10.0)


class TextBaselineConfig(Schema):
    """Knobs of the text baselines, settable from an evaluation config's `baselines:` section."""

    run: list[str] = Field(default_factory=lambda: ["tfidf_logreg"], description="which baselines to run, by name")
    c_grid: list[float] = Field(default_factory=lambda: list(C_GRID),
                                description="inverse L2 strengths tried by the inner CV (Ridge alpha = 1/C)")
    inner_folds: int = Field(3, ge=2, le=10, description="inner CV folds on each outer fold's training rows")
    min_df: PositiveInt = Field(2, description="keep terms that occur in at least this many training texts")
    max_ngram: int = Field(2, ge=1, le=3, description="word n-grams from 1 to this")
    max_iter: PositiveInt = 2000

    @field_validator("run")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        check_known(v, TEXT_BASELINES, "text baseline")
        return v

    @field_validator("c_grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        if not v or any(c <= 0 for c in v):
            raise ValueError("c_grid needs at least one positive value")
        return v


class _TfidfModel:
    """TF-IDF fitted on the rows given to `fit`, then a linear model with C chosen by inner CV.

    The vectoriser is fitted once per outer fold, on that fold's training rows; the inner CV that
    picks C reuses its matrix (so inner validation rows share the IDF weights -- harmless for
    choosing C, and the outer test rows are never seen). One vectoriser fit per fold instead of one
    per grid point and inner split halves the baseline's time on PubMedQA (10 folds: ~35 s on one core).
    """

    def __init__(self, kind: Literal["classification", "regression"], cfg: TextBaselineConfig, seed: int):
        self.kind, self.cfg, self.seed = kind, cfg, seed

    def fit(self, texts: Any, y: np.ndarray) -> _TfidfModel:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold

        cfg = self.cfg
        # A tiny fold can leave no term in min_df texts; fall back to 1 rather than fail.
        min_df = cfg.min_df if len(texts) >= 5 * cfg.min_df else 1
        self.vec = TfidfVectorizer(ngram_range=(1, cfg.max_ngram), sublinear_tf=True, min_df=min_df,
                                   dtype=np.float64)
        x = self.vec.fit_transform(texts)
        if self.kind == "regression":
            model: Any = Ridge()
            grid: dict[str, list[float]] = {"alpha": [1.0 / c for c in cfg.c_grid]}
            n_inner = min(cfg.inner_folds, len(y) // 2)
            inner: Any = KFold(n_inner, shuffle=True, random_state=self.seed) if n_inner >= 2 else None
            scoring = "r2"
        else:
            model = LogisticRegression(class_weight="balanced", max_iter=cfg.max_iter, random_state=self.seed)
            grid = {"C": list(cfg.c_grid)}
            counts = np.bincount(y)
            n_inner = min(cfg.inner_folds, int(counts[counts > 0].min()))
            inner = StratifiedKFold(n_inner, shuffle=True, random_state=self.seed) if n_inner >= 2 else None
            scoring = "matthews_corrcoef"
        key, values = next(iter(grid.items()))
        if inner is None or len(values) == 1:
            model.set_params(**{key: values[len(values) // 2]})
            self.model = model.fit(x, y)
        else:
            search = GridSearchCV(model, grid, scoring=scoring, cv=inner, n_jobs=1, refit=True, error_score=np.nan)
            self.model = search.fit(x, y).best_estimator_
        return self

    def predict(self, texts: Any) -> np.ndarray:
        return self.model.predict(self.vec.transform(texts))

    def predict_proba(self, texts: Any) -> np.ndarray:
        return self.model.predict_proba(self.vec.transform(texts))


def tfidf_logreg(
    task: Task, folds: list[Fold], seed: int, cfg: TextBaselineConfig | None = None
) -> list[FoldPrediction]:
    """TF-IDF (word 1-2-grams, sublinear tf) + balanced logistic regression, C tuned by inner CV."""
    conf = cfg or TextBaselineConfig()
    check_folds(task, folds)
    texts = np.asarray(task.inputs, dtype=object)

    def make(kind: Literal["classification", "regression"], fold: int, n_train: int) -> _TfidfModel:
        return _TfidfModel(kind, conf, seed)

    return fit_predict(task, folds, texts, make)


# ------------------------------------------------------------------------------------------ registry


TextBaselineFn = Callable[[Task, list[Fold], int, TextBaselineConfig], list[FoldPrediction]]

TEXT_BASELINES: dict[str, TextBaselineFn] = {
    "tfidf_logreg": tfidf_logreg,
}


def text_baseline_method(name: str, cfg: TextBaselineConfig | None = None) -> Method:
    """The named text baseline as a plain `Method` (task, folds, seed), with its knobs taken from `cfg`."""
    return method_from(TEXT_BASELINES, name, cfg or TextBaselineConfig(), "text baseline")
