"""Explanations beside the scores: which features a baseline leans on, and which positions a fine-tuned
model looks at.

A verdict says *whether* the model beats k-mer XGBoost; it does not say what either of them uses. Two
kinds of explanation answer that, both collected while the methods run (no second fit):

* **Baseline features.** An estimator hands each fold's fitted model and test rows to a callback
  (`biofm.eval.fit.fit_predict(..., on_fit=...)`, the one fit-predict loop); a callback made here turns
  them into per-feature numbers. Gradient-boosted trees give SHAP values (TreeSHAP, XGBoost's native
  `pred_contribs=True`, on the margin): per class, mean |SHAP| of each feature towards that class over
  the fold's test rows OF that class, averaged over folds, with the sign of the mean contribution there
  (+: on its own rows the feature speaks for the class). Over all test rows the sign of a decisive
  feature would be meaningless: a motif pushes its rows up and the others down, and the mean of the two
  is near 0 whichever way it works. Linear baselines give their
  coefficients instead (clearly labelled "coefficients", not SHAP): averaged over folds, the largest
  positive per class. Another estimator reports explanations by passing its own callback.
* **Model attributions.** The fine-tuning loop calls `attribute_finetuned` with its last fold's model;
  for a few test rows per class (the ones the model is surest of, correctly) integrated gradients
  (`ig_steps`, midpoint rule) on the input token embeddings, from a reference where every
  non-special token is the mask token (a zero reference is useless here: the LayerNorm right after
  the embedding is scale-invariant, so the zero-to-input path barely changes the output until its very
  start), towards the class's centred logit z_c − mean(z) (shift-invariant, as softmax is). Token
  attributions are spread evenly over the bases (characters) each token covers, so a k-mer token's
  score is shared by its k positions and the positions sum to the tokens' total.

Collection is switched on by the evaluation (`collecting(cfg.explain)`) around each method's run; a
callback with no collector active does nothing, so the estimators cost the same when explanations are
off, and any other caller of the estimators is unaffected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, PositiveInt

from biofm.config import Schema
from biofm.eval.fit import Fitted, OnFit
from biofm.eval.types import Fold, FoldPrediction, Task
from biofm.io.atomic import atomic_path

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig

__all__ = ["ExplainConfig", "attribute_finetuned", "collecting", "console_line", "draw_attributions",
           "integrated_gradients", "linear_coefficients", "model_attributions", "xgboost_shap"]

REGRESSION_KEY = "value"  # a regression model has one output; its explanations sit under this key
# the IG reference and the attribution target, in words (results.json and the report say them)
ATTRIBUTION_HOW = ("integrated gradients ({steps} steps, midpoint rule) on the input token embeddings, from a "
                   "reference with every non-special token replaced by the mask token, towards the class's "
                   "centred logit z_c - mean(z); each token's attribution is spread evenly over the positions "
                   "it covers")
_LETTER_COLOURS = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839", "U": "#D62839"}


class ExplainConfig(Schema):
    enabled: bool = Field(True, description="baseline feature explanations (SHAP for gradient boosting, "
                          "coefficients for logistic regression) and fine-tuned model attributions")
    top_features: PositiveInt = Field(10, description="features reported per class")
    examples_per_class: PositiveInt = Field(2, description="test rows per class given per-position attributions")
    ig_steps: PositiveInt = Field(20, description="integrated-gradients steps")
    fresh_fit: bool = Field(True, description="when no fine-tuning method ran, fine-tune IA3 on the last fold "
                            "alone for the attributions (one fold of IA3's cost); false = no attributions then")
    window: PositiveInt = Field(120, description="positions drawn per example in the attribution PNG (the "
                                "window with the most attribution, for longer sequences)")


# ------------------------------------------------------------------------------------------ collection


@dataclass
class _FoldFeatures:
    names: np.ndarray  # str [F]
    classes: list[int]  # the task's class code of each row below (-1: regression)
    mean_abs: np.ndarray  # [len(classes), F]
    mean: np.ndarray  # [len(classes), F]


class Collector:
    """What the methods run inside one `collecting` block reported: per-fold feature numbers of one kind,
    and the last fine-tuned model's attributions."""

    def __init__(self, cfg: ExplainConfig) -> None:
        self.cfg = cfg
        self.kind: Literal["shap", "coefficients"] | None = None
        self.folds: list[_FoldFeatures] = []
        self.attribution: dict[str, Any] | None = None
        self.n_attributed = 0  # fine-tuning runs that reported (a fixed split's seeds run one at a time)
        self.seconds = 0.0  # spent computing explanations (not part of the method's own time)

    def add(self, kind: Literal["shap", "coefficients"], fold: _FoldFeatures) -> None:
        if self.kind not in (None, kind):
            raise ValueError(f"one method reported both {self.kind} and {kind} explanations")
        self.kind = kind
        self.folds.append(fold)

    def result(self, task: Task) -> dict[str, Any]:
        """The method's extra fields for results.json ({} when nothing was reported)."""
        out: dict[str, Any] = {}
        if self.folds:
            assert self.kind is not None
            out["explanations"] = _aggregate(self.folds, self.kind, task, self.cfg.top_features)
            out["explanations_kind"] = self.kind
            out["explanations_note"] = _note(self.kind, len(self.folds))
        if self.attribution is not None:
            out["attributions"] = self.attribution
        if out:
            out["explain_seconds"] = self.seconds
        return out


_ACTIVE: ContextVar[Collector | None] = ContextVar("biofm_explain", default=None)


@contextmanager
def collecting(cfg: ExplainConfig | None) -> Iterator[Collector | None]:
    """Collect what the methods run inside the block report; yields None (and collects nothing) when
    explanations are off."""
    if cfg is None or not cfg.enabled:
        yield None
        return
    collector = Collector(cfg)
    token = _ACTIVE.set(collector)
    try:
        yield collector
    finally:
        _ACTIVE.reset(token)


def _note(kind: str, n_folds: int) -> str:
    if kind == "shap":
        return (f"SHAP values (TreeSHAP, XGBoost pred_contribs, on the margin): per class, mean |SHAP| of each "
                f"feature towards the class over the test rows of that class, averaged over {n_folds} fold(s); "
                "sign = of the mean contribution there (+ speaks for the class); a binary model has one margin, "
                "the first class's contributions are its negatives")
    return (f"not SHAP: logistic-regression coefficients (per unit of the features the model was fitted on), "
            f"averaged over {n_folds} fold(s) (0 in a fold whose features did not include it); the largest "
            "positive per class")


def _aggregate(folds: list[_FoldFeatures], kind: str, task: Task, top: int) -> dict[str, list[dict[str, Any]]]:
    """Per class: the fold-averaged numbers of every feature seen, ranked (mean |SHAP|, or the coefficient),
    the first `top`. Feature sets may differ between folds (HVGs chosen per fold): features are matched by
    name, and a feature absent from a fold counts 0 there."""
    names, inverse = np.unique(np.concatenate([f.names for f in folds]), return_inverse=True)
    starts = np.cumsum([0] + [len(f.names) for f in folds])
    codes = sorted({c for f in folds for c in f.classes})
    out: dict[str, list[dict[str, Any]]] = {}
    for code in codes:
        abs_sum, sum_ = np.zeros(len(names)), np.zeros(len(names))
        n = 0
        for j, f in enumerate(folds):
            if code not in f.classes:
                continue
            r = f.classes.index(code)
            cols = inverse[starts[j]:starts[j + 1]]
            np.add.at(abs_sum, cols, f.mean_abs[r])
            np.add.at(sum_, cols, f.mean[r])
            n += 1
        abs_mean, mean = abs_sum / n, sum_ / n
        if kind == "shap":
            order = np.argsort(-abs_mean, kind="stable")[:top]
            rows = [{"feature": str(names[i]), "mean_abs_shap": float(abs_mean[i]), "mean_shap": float(mean[i])}
                    for i in order if abs_mean[i] > 0]
        else:
            order = np.argsort(-mean, kind="stable")[:top]
            rows = [{"feature": str(names[i]), "coefficient": float(mean[i])} for i in order if mean[i] > 0]
        out[_class_name(task, code)] = rows
    return out


def _class_name(task: Task, code: int) -> str:
    if code < 0:
        return REGRESSION_KEY
    return str(task.classes[code]) if task.classes and code < len(task.classes) else str(code)


Names = Sequence[str] | np.ndarray | Callable[[Fitted], Sequence[str] | np.ndarray]


def _names(names: Names, fitted: Fitted, n_features: int) -> np.ndarray:
    out = np.asarray(names(fitted) if callable(names) else names, dtype=str)
    if len(out) != n_features:
        raise ValueError(f"{len(out)} feature names for a model with {n_features} features")
    return out


def _per_class(values: np.ndarray, fitted: Fitted) -> tuple[list[int], np.ndarray]:
    """Rows of one-output-per-class numbers [C, F] and their task class codes, from a model's outputs:
    a regression's one output (-1), a binary model's one margin (the second class; the first gets its
    negative) or one output per class present in the training rows."""
    if len(fitted.present) == 0:
        return [-1], values[None] if values.ndim == 1 else values
    if values.ndim == 1 or values.shape[0] == 1:
        v = values.reshape(-1)
        return [int(fitted.present[0]), int(fitted.present[1])], np.stack([-v, v])
    return [int(c) for c in fitted.present], values


def _contributions(booster: Any, x: Any, n_out: int) -> np.ndarray:
    """SHAP values [rows, outputs, F] of a booster (its bias column dropped), in chunks of ~16 MB."""
    import xgboost as xgb

    n_feat = x.shape[1]
    chunk = max(1, (1 << 22) // (n_out * (n_feat + 1)))
    parts = [booster.predict(xgb.DMatrix(x[lo:lo + chunk]), pred_contribs=True).reshape(-1, n_out, n_feat + 1)
             for lo in range(0, x.shape[0], chunk)]
    return np.concatenate(parts)[:, :, :-1]


def xgboost_shap(names: Names) -> OnFit:
    """A `fit_predict` callback: SHAP values of a fitted XGBoost model on the fold's test rows (XGBoost's
    TreeSHAP, `pred_contribs=True`), as mean |SHAP| and mean SHAP towards each class over the test rows of
    that class (all test rows for a regression)."""

    def on_fit(fitted: Fitted) -> None:
        collector = _ACTIVE.get()
        if collector is None:
            return
        t0 = time.perf_counter()
        n_out = len(fitted.present) if len(fitted.present) > 2 else 1  # one margin for binary / regression
        phi = _contributions(fitted.model.get_booster(), fitted.x_test, n_out)  # [rows, n_out, F]
        if len(fitted.present) == 0:
            classes, mean_abs, mean = [-1], np.abs(phi).mean(0), phi.mean(0)
        else:
            classes, rows_abs, rows_mean = [], [], []
            for j, code in enumerate(fitted.present):
                mine = fitted.y_test == code
                if not mine.any():
                    continue  # no test row of this class in the fold
                # towards class j: its own output, or for a binary model the margin (second class) / its negative
                towards = phi[mine, j] if n_out > 1 else (phi[mine, 0] if j == 1 else -phi[mine, 0])  # [rows, F]
                classes.append(int(code))
                rows_abs.append(np.abs(towards).mean(0))
                rows_mean.append(towards.mean(0))
            if not classes:
                return
            mean_abs, mean = np.stack(rows_abs), np.stack(rows_mean)
        collector.add("shap", _FoldFeatures(_names(names, fitted, phi.shape[2]), classes, mean_abs, mean))
        collector.seconds += time.perf_counter() - t0

    return on_fit


def linear_coefficients(names: Names) -> OnFit:
    """A `fit_predict` callback: the coefficients of a fitted linear model (the last step of a pipeline),
    per class; they are per unit of the features the model saw (standardised ones, when the pipeline
    standardises)."""

    def on_fit(fitted: Fitted) -> None:
        collector = _ACTIVE.get()
        if collector is None:
            return
        t0 = time.perf_counter()
        est = fitted.model[-1] if hasattr(fitted.model, "steps") else fitted.model
        coef = np.asarray(est.coef_, dtype=np.float64)  # [1 or C, F], or [F] for a regression
        classes, values = _per_class(coef, fitted)
        collector.add("coefficients", _FoldFeatures(_names(names, fitted, values.shape[1]), classes,
                                                    np.abs(values), values))
        collector.seconds += time.perf_counter() - t0

    return on_fit


# ------------------------------------------------------------------------------------------ attributions


def integrated_gradients(model: Any, ids: Sequence[int], target: int, reference: Sequence[int], steps: int
                         ) -> tuple[np.ndarray, float]:
    """Per-token integrated gradients of the centred logit z_target − mean(z) of one sequence, on the input
    token embeddings, from the embeddings of `reference` (same length): (attributions [T], completeness
    gap = sum(attributions) − (f(input) − f(reference)), which shrinks with more steps).

    The path is swapped in with a forward hook on the model's input-embedding module, so any model that
    looks its tokens up there works (encoders, decoders, with or without an adapter); the steps run as
    one batch (several when the sequence is long).
    """
    import torch

    emb = model.get_input_embeddings()
    dev = emb.weight.device  # fp32 on the model's device: the completeness check needs full precision
    ids_t = torch.as_tensor([list(ids)], dtype=torch.long, device=dev)  # [1, T]
    ref_t = torch.as_tensor([list(reference)], dtype=torch.long, device=dev)
    with torch.no_grad():
        x, r = emb(ids_t).float(), emb(ref_t).float()  # [1, T, H]

    def f(logits: Any) -> Any:
        return logits[:, target] - logits.mean(-1)

    n_tokens = ids_t.shape[1]
    per_batch = max(1, min(steps, 8192 // max(n_tokens, 1)))
    grad_sum = torch.zeros_like(x[0])  # [T, H]
    with torch.enable_grad():
        for lo in range(0, steps, per_batch):
            alphas = (torch.arange(lo, min(lo + per_batch, steps), dtype=torch.float32, device=dev) + 0.5) / steps
            path = (r + alphas[:, None, None] * (x - r)).requires_grad_(True)  # [S, T, H]

            def swap(_module: Any, _inputs: Any, output: Any, path: Any = path) -> Any:
                return path.reshape(output.shape).to(output.dtype)

            handle = emb.register_forward_hook(swap)
            try:
                logits = model(input_ids=ids_t.expand(len(alphas), -1),
                               attention_mask=torch.ones(len(alphas), n_tokens, dtype=torch.long, device=dev)).logits
                (grad,) = torch.autograd.grad(f(logits.float()).sum(), path)
            finally:
                handle.remove()
            grad_sum += grad.sum(0)
    attr = ((x - r)[0] * grad_sum / steps).sum(-1)  # [T]
    with torch.no_grad():
        ends = model(input_ids=torch.cat([ids_t, ref_t]),
                     attention_mask=torch.ones(2, n_tokens, dtype=torch.long, device=dev))
        f_x, f_r = f(ends.logits.float()).tolist()
    values = attr.double().cpu().numpy()
    return values, float(values.sum() - (f_x - f_r))


def _spans(tokenizer: Any, text: str, max_tokens: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids (as fine-tuning made them) and the character span each covers ((a, a) for specials):
    the fast tokenizer's offsets, else the tokens' own lengths in order (k-mer tokens cover k bases)."""
    try:
        enc = tokenizer(text, truncation=True, max_length=max_tokens, return_offsets_mapping=True)
        return list(enc["input_ids"]), [(int(a), int(b)) for a, b in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError, KeyError):  # slow tokenizers (EsmTokenizer): no offsets
        ids = list(tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"])
        special = set(tokenizer.all_special_ids)
        spans, pos = [], 0
        for i, token in zip(ids, tokenizer.convert_ids_to_tokens(ids), strict=True):
            width = 0 if i in special else len(token)
            spans.append((pos, pos + width))
            pos += width
        return ids, spans


def to_positions(token_scores: np.ndarray, spans: Sequence[tuple[int, int]], length: int) -> np.ndarray:
    """Per-position scores [length]: each token's score spread evenly over the positions it covers;
    special tokens (empty spans) and positions past a truncation get none."""
    out = np.zeros(length)
    for score, (a, b) in zip(token_scores, spans, strict=True):
        if b > a:
            out[a:min(b, length)] += score / (b - a)
    return out


def _choose(task: Task, pred: FoldPrediction, n: int) -> list[tuple[int, int, float]]:
    """(row, class, p) of up to `n` test rows per class: the rows of that class with the highest predicted
    probability of it (correct, confident predictions first), so the tracks show what the model uses."""
    assert pred.proba is not None
    test = np.asarray(pred.test_idx)
    out = []
    for c in range(max(task.n_classes, int(task.labels.max()) + 1)):
        mine = np.flatnonzero(task.labels[test] == c)
        order = mine[np.argsort(-pred.proba[mine, c], kind="stable")][:n]
        out += [(int(test[j]), c, float(pred.proba[j, c])) for j in order]
    return out


def attribute_finetuned(task: Task, model: Any, tokenizer: Any, pred: FoldPrediction, max_tokens: int,
                        method: str, fold: int) -> None:
    """Called by the fine-tuning loop with a fold's trained model and its test predictions: when a
    collector is active, integrated-gradients attributions of a few test rows per class (string inputs,
    classification only)."""
    collector = _ACTIVE.get()
    if collector is None or task.type != "classification" or pred.proba is None:
        return
    if not all(isinstance(x, str) for x in task.inputs):
        return
    masked = next((i for i in (tokenizer.mask_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
                   if i is not None), None)
    if masked is None:  # no token to stand for "unknown here": no reference to integrate from
        return
    t0 = time.perf_counter()
    cfg = collector.cfg
    special = set(tokenizer.all_special_ids)
    was_training = model.training
    model.eval()
    examples = []
    for row, c, p in _choose(task, pred, cfg.examples_per_class):
        text = task.inputs[row]
        ids, spans = _spans(tokenizer, text, max_tokens)
        reference = [i if i in special else masked for i in ids]
        scores, gap = integrated_gradients(model, ids, c, reference, cfg.ig_steps)
        predicted = int(np.argmax(pred.proba[list(pred.test_idx).index(row)]))
        examples.append({"row": row, "class": _class_name(task, c), "predicted": _class_name(task, predicted),
                         "p_class": p, "sequence": text,
                         "scores": [round(float(v), 6) for v in to_positions(scores, spans, len(text))],
                         "total": float(scores.sum()), "completeness_gap": gap})
    model.train(was_training)
    collector.n_attributed += 1
    # under a fixed split every seed is its own one-fold run: the last one reporting is the last seed
    collector.attribution = {"method": method, "fold": max(fold, collector.n_attributed - 1),
                             "how": ATTRIBUTION_HOW.format(steps=cfg.ig_steps), "examples": examples}
    collector.seconds += time.perf_counter() - t0


def model_attributions(task: Task, folds: list[Fold], emb: dict[str, np.ndarray], cfg: EvaluateConfig,
                       hooks: Any, model_dir: Path, model: Any, tok: Any, methods: list[dict[str, Any]]
                       ) -> dict[str, Any] | None:
    """The task's attributions: those of the best-scoring fine-tuning method (its last fold; the other
    methods' are dropped from `methods`), or, when no fine-tuning ran and `fresh_fit` is on, of an IA3
    fine-tuning of the last fold alone (the cheapest model that has a classifier to explain)."""
    from biofm.eval.metrics import HEADLINE

    metric = HEADLINE[task.type]
    tuned = [m for m in methods if "attributions" in m]
    if tuned:
        best = max(tuned, key=lambda m: np.nan_to_num(m["summary"][metric]["mean"], nan=-np.inf))
        chosen = best["attributions"]
        for m in tuned:
            del m["attributions"]
        return chosen
    if not (cfg.explain.enabled and cfg.explain.fresh_fit) or task.type != "classification":
        return None
    last = len(folds) - 1
    one = cfg.model_copy(update={"seed": cfg.seed + last,
                                 "finetune": cfg.finetune.model_copy(update={"methods": ["ia3"]})})
    for name, _kind, run in hooks.model_methods(task, [folds[last]], emb, one, model_dir, model, tok):
        if name != "finetune-ia3":
            continue
        t0 = time.perf_counter()
        with collecting(cfg.explain) as collector:
            run()
        if collector is None or collector.attribution is None:
            return None
        return {**collector.attribution, "fold": last, "fresh_fit_seconds": time.perf_counter() - t0,
                "method": "finetune-ia3 (fresh fit on the last fold, for the attributions only; not scored)"}
    return None


# ------------------------------------------------------------------------------------------ output


def console_line(t: dict[str, Any], n: int = 3) -> str | None:
    """One line naming the top `n` features of each class of a task's first explained method (SHAP first)."""
    explained = [m for m in t["methods"] if m.get("explanations")]
    if not explained:
        return None
    m = min(explained, key=lambda m: m.get("explanations_kind") != "shap")
    kind = "SHAP" if m.get("explanations_kind") == "shap" else "coefficients"
    parts = []
    for cls, rows in m["explanations"].items():
        if kind == "SHAP":
            tops = [f"{r['feature']}{'+' if r['mean_shap'] >= 0 else '-'}" for r in rows[:n]]
        else:
            tops = [r["feature"] for r in rows[:n]]
        parts.append(f"{cls}: {', '.join(tops) or '-'}")
    return f"[{t['task']}] top features of {m['name']} ({kind}): " + "; ".join(parts)


def _window(scores: np.ndarray, width: int) -> tuple[int, int]:
    """[a, b) of at most `width` positions with the largest total |attribution|."""
    if len(scores) <= width:
        return 0, len(scores)
    run = np.convolve(np.abs(scores), np.ones(width), mode="valid")  # [L - width + 1]
    a = int(np.argmax(run))
    return a, a + width


def _glyphs() -> Callable[[str], Any]:
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    prop = FontProperties(family="DejaVu Sans", weight="bold")
    cache: dict[str, Any] = {}

    def glyph(ch: str) -> Any:
        """The letter's outline, or None for blanks and characters the font cannot draw as a path."""
        if ch not in cache:
            try:
                cache[ch] = None if not ch.strip() else TextPath((0, 0), ch, size=1, prop=prop)
            except (AttributeError, ValueError):  # e.g. an empty path for a space: matplotlib cannot build it
                cache[ch] = None
        return cache[ch]

    return glyph


def draw_attributions(attr: dict[str, Any], title: str, dest: Path, window: int = 120) -> None:
    """A sequence-logo-style track per example: each position's letter, scaled to the height of its
    attribution, above the axis when it speaks for the example's class and below when against (the
    DeepLIFT / TF-MoDISco convention); long sequences show the `window` positions with the most
    attribution, with their true coordinates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import PathPatch, Rectangle
    from matplotlib.transforms import Affine2D

    glyph = _glyphs()
    examples = attr["examples"]
    width = max(min(len(e["scores"]), window) for e in examples)
    fig, axes = plt.subplots(len(examples), 1, figsize=(min(2 + 0.13 * width, 20), 1.5 * len(examples) + 0.6),
                             dpi=100, squeeze=False)
    for ax, e in zip(axes[:, 0], examples, strict=True):
        scores = np.asarray(e["scores"])
        a, b = _window(scores, window)
        top = float(np.abs(scores[a:b]).max()) if b > a else 0.0
        top = top if top > 0 else 1.0
        for i in range(a, b):
            s, ch = float(scores[i]), e["sequence"][i]
            colour = _LETTER_COLOURS.get(ch.upper(), "#555555")
            path = glyph(ch)
            if s == 0:
                continue
            box = path.get_extents() if path is not None else None
            if box is None or box.width <= 0 or box.height <= 0:  # a space or other blank: a plain bar
                ax.add_patch(Rectangle((i + 0.1, min(0.0, s)), 0.8, abs(s), color=colour))
                continue
            shape = (Affine2D().translate(-box.x0, -box.y0).scale(0.9 / box.width, abs(s) / box.height)
                     .translate(i + 0.05, min(0.0, s)))
            ax.add_patch(PathPatch(shape.transform_path(path), color=colour, lw=0))
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlim(a, a + width)
        ax.set_ylim(-1.1 * top, 1.1 * top)
        ax.set_title(f"row {e['row']}: class {e['class']} (p={e['p_class']:.2f}, predicted {e['predicted']}); "
                     f"positions {a}-{b - 1} of {len(scores)}; total {e['total']:+.3f}", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.suptitle(f"{title}: {attr['method']}, fold {attr['fold']}", fontsize=9)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def png_name(task: str) -> str:
    """The attribution PNG of a task: its name made safe for a file name."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task)
    return f"attributions-{safe}.png"
