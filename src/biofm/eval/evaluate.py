"""`biofm evaluate`: Nucleotide Transformer's protocol with the baselines always beside the model.

For each task, on the same folds: probes on frozen embeddings of every layer (mean-pooled and CLS;
logistic regression and a small MLP; the layer is chosen per fold on a validation split carved from
the training rows, never on the test rows), parameter-efficient fine-tuning (IA3, LoRA), and the
modality's baselines. Every method returns fold predictions; metrics, summaries and the verdict are
computed here, by the same code for all.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt
from rich.console import Console

from biofm.config import Schema
from biofm.dna.baselines import BASELINES, BaselineConfig
from biofm.errors import BiofmError
from biofm.eval.finetune import FinetuneConfig, finetune
from biofm.eval.folds import make_folds, validation_split
from biofm.eval.metrics import HEADLINE, fold_metrics, summarise
from biofm.eval.types import Fold, FoldPrediction, Task
from biofm.eval.verdict import count_sentence, task_verdict

console = Console(stderr=True, markup=False, highlight=False)


class ProbeConfig(Schema):
    kinds: list[Literal["logreg", "mlp"]] = Field(default_factory=lambda: ["logreg", "mlp"])
    poolings: list[Literal["mean", "cls"]] = Field(default_factory=lambda: ["mean", "cls"])
    layers: list[int] | None = Field(None, description="layer indices (0 = embeddings); default all")
    C: float = Field(1.0, gt=0)
    mlp_hidden: list[int] = Field(default_factory=lambda: [128], max_length=2)
    tune_trials: int = Field(0, ge=0, description="Optuna TPE trials per fold (inside the training rows); 0 = off")


class EvaluateConfig(Schema):
    model: str | None = Field(None, description="model folder (RUN/model) or run folder")
    tasks: list[str] = Field(default_factory=list, description="task YAML files, or shipped names: splice, promoter")
    out: str = "eval"
    folds: PositiveInt = 10
    seed: int = 0
    embed_batch_size: PositiveInt = 64
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    baselines: BaselineConfig = Field(default_factory=BaselineConfig)
    cache_dir: str | None = None


def _scored(name: str, kind: str, task: Task, preds: list[FoldPrediction], seconds: float,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    per_fold = [fold_metrics(task, p) for p in sorted(preds, key=lambda p: p.fold)]
    return {"name": name, "kind": kind, "per_fold": per_fold, "summary": summarise(per_fold),
            "seconds": seconds, **(extra or {})}


def _probe_methods(task: Task, folds: list[Fold], emb: dict[str, np.ndarray], cfg: EvaluateConfig) -> list[dict]:
    from biofm.eval.probe import probe_layers, tune_probe

    metric = HEADLINE[task.type]
    out = []
    inner = [validation_split(tr, task, 0.15, cfg.seed + k) for k, (tr, _) in enumerate(folds)]
    for kind in cfg.probes.kinds:
        for pooling in cfg.probes.poolings:
            t0 = time.perf_counter()
            X = np.asarray(emb[pooling])
            layers = cfg.probes.layers or list(range(X.shape[1]))
            kw: dict[str, Any] = {"C": cfg.probes.C, "hidden": tuple(cfg.probes.mlp_hidden), "seed": cfg.seed,
                                  "layers": layers}
            if cfg.probes.tune_trials and kind == "logreg":
                # Optuna TPE picks C per outer fold from that fold's training rows only (inner CV on the
                # last layer); the same per-fold C then serves every layer. MLP settings are not tuned:
                # different hidden sizes cannot share one batched solve.
                tuned = tune_probe(X[:, layers[-1]], task.labels, folds, task.type, "logreg",
                                   cfg.probes.tune_trials, cfg.seed)
                kw["C"] = [float(t["C"]) for t in tuned]
            outer = probe_layers(X, task.labels, folds, task.type, kind, **kw)
            on_val = probe_layers(X, task.labels, inner, task.type, kind, **kw)
            # per-layer scores on the test folds, for the per-layer plot only
            per_layer = {int(layer): summarise([fold_metrics(task, p) for p in outer[layer]])[metric]
                         for layer in layers}
            chosen, preds = [], []
            for k in range(len(folds)):
                val_score = {layer: fold_metrics(task, on_val[layer][k])[metric] for layer in layers}
                best = max(layers, key=lambda layer: np.nan_to_num(val_score[layer], nan=-np.inf))
                chosen.append(int(best))
                preds.append(outer[best][k])
            out.append(_scored(f"probe-{kind}-{pooling}", "probe", task, preds, time.perf_counter() - t0,
                               {"layers_chosen": chosen, "per_layer": per_layer}))
    return out


def _check_context(task: Task, tok, max_tokens: int, long_mode: str) -> None:
    """Inputs longer than the model's context are an error unless the task says how to cut them."""
    lengths = [len(tok(x, add_special_tokens=False)["input_ids"]) for x in task.inputs]
    limit = max_tokens - 1  # <cls>
    n_long = sum(n > limit for n in lengths)
    if n_long and long_mode == "error":
        raise BiofmError(
            f"{task.source}: {n_long} of {len(lengths)} sequences are longer than the model's context "
            f"({limit} tokens; the longest has {max(lengths)}); add `long_sequences: truncate` or "
            f"`long_sequences: windows` to the task file"
        )


def evaluate_task(task: Task, cfg: EvaluateConfig, model_dir: Path | None, model=None, tok=None) -> dict[str, Any]:
    folds = make_folds(task, cfg.folds, cfg.seed)
    methods: list[dict] = []
    if model is not None:
        from biofm.eval.embeddings import cached_embeddings

        max_tokens = int(getattr(model.config, "max_position_embeddings", 512))
        long_mode = task.meta.get("long_sequences") or "error"
        _check_context(task, tok, max_tokens, long_mode)
        t0 = time.perf_counter()
        emb = cached_embeddings(model, tok, model_dir, list(task.inputs), max_tokens=max_tokens, long_mode=long_mode,
                                batch_size=cfg.embed_batch_size, cache_dir=cfg.cache_dir)
        console.print(f"[{task.name}] embeddings {tuple(emb['mean'].shape)} in {time.perf_counter() - t0:.1f}s")
        methods += _probe_methods(task, folds, emb, cfg)
        for method in cfg.finetune.methods:
            t0 = time.perf_counter()
            preds = finetune(task, folds, cfg.seed, model_dir=model_dir, tokenizer=tok, method=method,
                             cfg=cfg.finetune, max_tokens=max_tokens)
            methods.append(_scored(f"finetune-{method}", "finetune", task, preds, time.perf_counter() - t0))
            console.print(f"[{task.name}] finetune-{method} in {methods[-1]['seconds']:.1f}s")
    for name in cfg.baselines.run:
        t0 = time.perf_counter()
        preds = BASELINES[name](task, folds, cfg.seed, cfg.baselines)
        methods.append(_scored(f"baseline-{name}", "baseline", task, preds, time.perf_counter() - t0))
        console.print(f"[{task.name}] baseline-{name} in {methods[-1]['seconds']:.1f}s")
    metric = HEADLINE[task.type]
    verdict = task_verdict(task.name, methods, metric)
    return {"task": task.name, "type": task.type, "n": len(task.labels), "classes": task.classes,
            "folds": len(folds), "headline_metric": metric, "methods": methods,
            "verdict": None if verdict is None else {**vars(verdict), "sentence": verdict.sentence()}}


def run_evaluation(cfg: EvaluateConfig) -> Path:
    from biofm.dna.tasks import load_task, shipped_task
    from biofm.eval.report import write_outputs

    model = tok = model_dir = None
    if cfg.model:
        from biofm.models.load import load_masked_lm, resolve_model_dir

        model_dir = resolve_model_dir(cfg.model)
        model, tok = load_masked_lm(model_dir)
    tasks = [load_task(shipped_task(t) if t in ("splice", "promoter") else t) for t in cfg.tasks]
    results = []
    for task in tasks:
        results.append(evaluate_task(task, cfg, model_dir, model, tok))
    verdicts = [r["verdict"] for r in results if r["verdict"]]
    overall = count_sentence([v["outcome"] for v in verdicts]) if verdicts else "no verdict (no model)"
    return write_outputs(Path(cfg.out), {"model": str(model_dir) if model_dir else None, "overall": overall,
                                         "config": cfg.model_dump(mode="json"), "tasks": results})
