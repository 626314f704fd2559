"""`biofm evaluate`: Nucleotide Transformer's protocol with the baselines always beside the model.

For each task, on the same folds: probes on frozen embeddings of every layer (mean-pooled and CLS,
or the last token of a causal model; logistic regression and a small MLP; the layer is chosen per
fold on a validation split carved from the training rows, never on the test rows), parameter-
efficient fine-tuning (IA3, LoRA) for sequence models, and the modality's baselines. Every method
returns fold predictions; metrics, summaries and the verdict are computed here, by the same code
for all. The modality of a task picks its loader, its embedding function and its baselines from
the modality plug-in's evaluation module (`biofm.modality`); nothing here knows which modalities
exist. Each modality's baseline settings sit under its own key of the config (`baselines` for DNA,
`text_baselines`, `cell_baselines`, ...), added to the schema from the registry.

A task that names a fixed split (a benchmark's train / validation / test rows) is scored the way
published tables are: every method trains on the train rows, selects on the validation rows (carved
from train when the task names none) and is scored on the test rows, once per seed (`seeds`, default
the task's, else 3). The seeds are the "folds" (fold k = seed `seed + k`), so methods keep their one
signature; baselines and the modality's model methods are run one seed at a time with seed `seed + k`
(some draw their randomness from `seed` alone and would otherwise repeat one run), probes vary by the
fold index. Mean ± s.d. is then over seeds, verdicts are paired seed by seed on the one test set, and
every result says which protocol it was scored under.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt, create_model
from rich.console import Console

from biofm.config import Schema
from biofm.errors import BiofmError
from biofm.eval.control import PREFIX as CONTROL_PREFIX
from biofm.eval.control import gain_sentence, make_control_model, pretraining_gain
from biofm.eval.explain import ExplainConfig, collecting, model_attributions
from biofm.eval.finetune import FinetuneConfig
from biofm.eval.folds import is_fixed, make_folds, n_seeds, protocol, split_sizes, unit, validation_split
from biofm.eval.metrics import HEADLINE, fold_metrics, summarise
from biofm.eval.report import duplicates_sentence
from biofm.eval.types import Fold, FoldPrediction, Task
from biofm.eval.verdict import count_sentence, task_verdict
from biofm.modality import get as get_modality
from biofm.modality import modalities
from biofm.progress import progress, tracked

console = Console(stderr=True, markup=False, highlight=False)


class ProbeConfig(Schema):
    kinds: list[Literal["logreg", "mlp"]] = Field(default_factory=lambda: ["logreg", "mlp"])
    poolings: list[Literal["mean", "cls", "last"]] = Field(
        default_factory=lambda: ["mean", "cls", "last"],
        description="those a model offers are used: cls for encoders, last token for causal models")
    knn_k: PositiveInt = Field(15, description="neighbours of the kNN probe (cell tasks)")
    layers: list[int] | None = Field(None, description="layer indices (0 = embeddings); default all")
    C: float = Field(1.0, gt=0)
    mlp_hidden: list[int] = Field(default_factory=lambda: [128], max_length=2)
    tune_trials: int = Field(0, ge=0, description="Optuna TPE trials per fold (inside the training rows); 0 = off")


class EvaluateBase(Schema):
    model: str | None = Field(None, description="model folder (RUN/model), run folder, published checkpoint folder "
                              "or cached Hugging Face id (org/name)")
    modality: str | None = Field(None, description="read the model as this modality (default: inferred from its "
                                 "folder: biofm's config key, else the published layout)")
    allow_pickle: bool = Field(False, description="read a published model's pickled files (Geneformer's gene "
                               "dictionaries); unpickling can run code, so only for files you trust")
    tasks: list[str] = Field(default_factory=list, description="task YAML files, tables, FILE.h5ad:LABEL_COLUMN, "
                             "dataset:NAME:LABEL_COLUMN, or shipped names: splice, promoter, pubmedqa, pbmc-celltypes")
    out: str = "eval"
    folds: PositiveInt = Field(10, description="cross-validation folds (tasks without a fixed split)")
    seeds: PositiveInt | None = Field(None, description="fixed-split tasks: runs with seeds seed, seed+1, ...; "
                                      "default the task's `seeds:`, else 3")
    seed: int = 0
    embed_batch_size: PositiveInt = 64
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    control: bool = Field(True, description="also run the model's methods on its random-weights twin (same "
                          "architecture and tokenizer, fresh weights from `seed`): the pretraining gain")
    explain: ExplainConfig = Field(default_factory=ExplainConfig, description="what the baselines' features and "
                                   "the fine-tuned model's positions contribute (biofm.eval.explain)")
    cache_dir: str | None = None
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
                        description="where models run: auto (CUDA, else Apple MPS, else CPU) | cpu | cuda | cuda:N | "
                        "mps; on CUDA forward passes use bf16 autocast and fine-tuning runs there too")


def _with_baselines() -> type[EvaluateBase]:
    """EvaluateBase plus one field per registered modality holding its baselines' settings."""
    fields: dict[str, Any] = {}
    for m in modalities().values():
        schema = m.resolve(m.baseline_schema)
        fields[m.baseline_key] = (schema, Field(default_factory=schema, description=f"{m.name} baselines"))
    return create_model("EvaluateConfig", __base__=EvaluateBase, __module__=__name__, **fields)


EvaluateConfig = _with_baselines()


def single_class_warnings(name: str, task: Task, preds: list[FoldPrediction]) -> list[str]:
    """A classifier that predicts one class on a fold whose test rows hold several has learned nothing
    there (its MCC is 0 by definition); say so, naming the method and the fold, instead of letting a
    0.000 ± 0.000 pass as a score."""
    if task.type != "classification":
        return []
    out = []
    for p in sorted(preds, key=lambda p: p.fold):
        predicted = np.unique(p.pred)
        if len(predicted) == 1 and len(np.unique(task.labels[p.test_idx])) > 1:
            cls = task.classes[int(predicted[0])] if task.classes else str(predicted[0])
            hint = " (check finetune.lr_* and finetune.class_weight)" if "finetune" in name else ""
            out.append(f"{name} predicted only class {cls!r} on {unit(task, plural=False)} {p.fold} "
                       f"({len(p.test_idx)} test rows){hint}")
    return out


def _scored(name: str, kind: str, task: Task, preds: list[FoldPrediction], seconds: float,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    per_fold = [fold_metrics(task, p) for p in sorted(preds, key=lambda p: p.fold)]
    return {"name": name, "kind": kind, "per_fold": per_fold, "summary": summarise(per_fold),
            "seconds": seconds, "warnings": single_class_warnings(name, task, preds), "predictions": preds,
            **(extra or {})}


def _seed_cfg(cfg: EvaluateConfig, k: int, n: int) -> EvaluateConfig:
    """The config of seed k of a fixed split's n: seed + k, and a fine-tuning time budget (meant for all
    folds of a method) shared evenly between the n runs."""
    update: dict[str, Any] = {"seed": cfg.seed + k}
    if cfg.finetune.time_budget_s:
        update["finetune"] = cfg.finetune.model_copy(update={"time_budget_s": cfg.finetune.time_budget_s / n})
    return cfg.model_copy(update=update)


def _per_seed(task: Task, folds: list[Fold], seed: int,
              run: Callable[[list[Fold], int], list[FoldPrediction]]) -> list[FoldPrediction]:
    """`run(folds, seed)`; under a fixed split one fold at a time with seed + k, renumbered k, because a
    method may seed every fold alike (several baselines do) and would then repeat one run S times."""
    if not is_fixed(task):
        return run(folds, seed)
    out = []
    for k, fold in enumerate(folds):
        (pred,) = run([fold], seed + k)
        out.append(replace(pred, fold=k))
    return out


def _model_methods(task: Task, folds: list[Fold], emb: dict[str, np.ndarray], cfg: EvaluateConfig, hooks: Any,
                   model_dir: Path, model, tok) -> list[tuple[str, str, Callable[[], list[FoldPrediction]]]]:
    """The modality's model methods (name, kind, run); under a fixed split each seed's run is built with
    its own config (`_seed_cfg`) on its one fold, and `run()` returns the seeds' predictions as folds."""
    if not is_fixed(task):
        return list(hooks.model_methods(task, folds, emb, cfg, model_dir, model, tok))
    seeded = [list(hooks.model_methods(task, [fold], emb, _seed_cfg(cfg, k, len(folds)), model_dir, model, tok))
              for k, fold in enumerate(folds)]

    def run(j: int) -> list[FoldPrediction]:
        return [replace(pred, fold=k) for k, methods in enumerate(seeded) for pred in methods[j][2]()]

    return [(name, kind, lambda j=j: run(j)) for j, (name, kind, _) in enumerate(seeded[0])]


def _probe_methods(task: Task, folds: list[Fold], emb: dict[str, np.ndarray], cfg: EvaluateConfig) -> list[dict]:
    from biofm.eval.probe import probe_layers, tune_probe

    metric = HEADLINE[task.type]
    out = []
    # the layer is chosen on these rows: a fixed split's validation rows when it names them
    inner = [validation_split(tr, task, 0.15, cfg.seed + k, min_rows=2) for k, (tr, _) in enumerate(folds)]
    runs = [(kind, pooling) for kind in cfg.probes.kinds for pooling in cfg.probes.poolings if pooling in emb]
    for kind, pooling in tracked(runs, f"[{task.name}] probes on every layer", unit="probes"):
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


def _model_side(task: Task, folds: list[Fold], cfg: EvaluateConfig, hooks: Any, model_dir: Path, model, tok,
                control: bool = False) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Probes and the modality's model methods (fine-tuning, kNN) for one model; a control's methods are
    named control-NAME and kind 'control', so verdicts against the baselines never take them."""
    t0 = time.perf_counter()
    emb = hooks.embeddings(task, cfg, model_dir, model, tok)
    who = "random-weights control" if control else "model"
    console.print(f"[{task.name}] {who} embeddings {tuple(emb['mean'].shape)} in {time.perf_counter() - t0:.1f}s")
    methods = _probe_methods(task, folds, emb, cfg)
    for name, kind, run in _model_methods(task, folds, emb, cfg, hooks, model_dir, model, tok):
        t0 = time.perf_counter()
        with collecting(None if control else cfg.explain) as found, progress(f"[{task.name}] {who} {name}", None):
            preds = run()  # (the control's are not explained)
        extra = found.result(task) if found else {}
        methods.append(_scored(name, kind, task, preds, time.perf_counter() - t0 - extra.get("explain_seconds", 0),
                               extra))
        console.print(f"[{task.name}] {who} {name} in {methods[-1]['seconds']:.1f}s")
    if control:
        for m in methods:
            m["warnings"] = [CONTROL_PREFIX + w for w in m["warnings"]]  # each starts with the method's name
            m["name"], m["kind"] = CONTROL_PREFIX + m["name"], "control"
    return methods, emb


class _PublishedHooks:
    """A modality's evaluation hooks whose embeddings come from its `published_embeddings` verb: a published
    checkpoint (e.g. Geneformer) is embedded with its own tokenisation, not biofm's."""

    def __init__(self, hooks: Any, embeddings: Callable[..., dict[str, np.ndarray]]) -> None:
        self._hooks, self.embeddings = hooks, embeddings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hooks, name)


def _hooks(modality: str, model: Any) -> Any:
    """The modality's evaluation hooks; for a published checkpoint, with the modality's own embedding of it."""
    from biofm.models.load import is_biofm_checkpoint

    m = get_modality(modality)
    if model is not None and "published_embeddings" in m.verbs and not is_biofm_checkpoint(model.config):
        return _PublishedHooks(m.hooks(), m.verb("published_embeddings"))
    return m.hooks()


def evaluate_task(task: Task, cfg: EvaluateConfig, model_dir: Path | None, model=None, tok=None,
                  modality: str = "dna", control: tuple[Path, Any, Any] | None = None) -> dict[str, Any]:
    """Every method on the same folds (or seeds of a fixed split); `control` = (folder, model, tokenizer) of
    the random-weights twin."""
    hooks = _hooks(modality, model)
    folds = make_folds(task, cfg.folds, cfg.seed, seeds=cfg.seeds)
    words = protocol(task, cfg.seeds)
    console.print(f"[{task.name}] {words}")
    duplicates = task.meta.get("test_duplicates") if is_fixed(task) else None
    if duplicates_sentence({"test_duplicates": duplicates}):
        console.print(f"[{task.name}] {duplicates_sentence({'test_duplicates': duplicates})}")
    methods: list[dict] = []
    emb: dict[str, np.ndarray] | None = None
    attributions = None
    if model is not None:
        assert model_dir is not None
        methods, emb = _model_side(task, folds, cfg, hooks, model_dir, model, tok)
        attributions = model_attributions(task, folds, emb, cfg, hooks, model_dir, model, tok, methods)
        if control is not None:
            methods += _model_side(task, folds, cfg, hooks, *control, control=True)[0]
    for name, method in hooks.baselines(cfg):
        t0 = time.perf_counter()
        with collecting(cfg.explain) as found, progress(f"[{task.name}] baseline-{name}", None):
            preds = _per_seed(task, folds, cfg.seed, lambda f, s, method=method: method(task, f, s))
        extra = found.result(task) if found else {}
        methods.append(_scored(f"baseline-{name}", "baseline", task, preds,
                               time.perf_counter() - t0 - extra.get("explain_seconds", 0), extra))
        console.print(f"[{task.name}] baseline-{name} in {methods[-1]['seconds']:.1f}s")
    for m in methods:
        for w in m["warnings"]:
            console.print(f"[{task.name}] warning: {w}")
    metric = HEADLINE[task.type]
    verdict = task_verdict(task.name, methods, metric, unit(task), task.labels)
    gain = pretraining_gain(methods, metric, unit(task), task.labels) if control is not None else None
    pictures = _pictures(task, methods, emb, hooks, cfg.seed) if task.type == "classification" else {}
    for m in methods:
        m.pop("predictions", None)  # kept for the paired bootstrap and the confusion matrices, not written out
    return {"task": task.name, "type": task.type, "modality": modality, "n": len(task.labels),
            "classes": task.classes, "folds": len(folds), "protocol": words,
            "seeds": n_seeds(task, cfg.seeds) if is_fixed(task) else None, "split": split_sizes(task),
            "test_duplicates": duplicates, "headline_metric": metric, "methods": methods,
            "verdict": None if verdict is None else {**vars(verdict), "sentence": verdict.sentence()},
            "pretraining_gain": gain, "control_sentence": gain_sentence(task.name, gain) if gain is not None else None,
            "tables": hooks.tables(task, cfg, emb), "attributions": attributions, **pictures}


def confusion(task: Task, preds: list[FoldPrediction]) -> list[list[int]]:
    """Counts [true class][predicted class] over every fold's test rows (each row once per fold or seed)."""
    k = len(task.classes or []) or int(np.max(task.labels)) + 1
    out = np.zeros((k, k), dtype=np.int64)
    for p in preds:
        np.add.at(out, (np.asarray(task.labels)[p.test_idx], np.asarray(p.pred, dtype=np.int64)), 1)
    return out.tolist()


def _pictures(task: Task, methods: list[dict], emb: dict[str, np.ndarray] | None, hooks: Any,
              seed: int) -> dict[str, Any]:
    """For the report of a classification task: the confusion matrices of the best model method and the
    best baseline and, where the modality asks for it (`EMBEDDING_MAP` in its evaluation hooks: cells,
    peaks), a 2-D map of the model's embeddings at the layer its best probe chose most often, coloured by
    label. The map's coordinates go to a PNG only (write_outputs), not into results.json."""
    metric = HEADLINE[task.type]
    out: dict[str, Any] = {}
    best: dict[str, dict] = {}
    for m in methods:
        side = "baseline" if m["kind"] == "baseline" else None if m["kind"] == "control" else "model"
        if side and m.get("predictions") and (side not in best or _mean(m, metric) > _mean(best[side], metric)):
            best[side] = m
    out["confusion"] = [{"method": m["name"], "matrix": confusion(task, m["predictions"])}
                        for m in (best.get("model"), best.get("baseline")) if m is not None]
    probes = [m for m in methods if m["kind"] == "probe" and m.get("layers_chosen")]
    if emb is not None and probes and getattr(hooks, "EMBEDDING_MAP", False):
        from biofm.analyze.layer_maps import project, projection_method

        probe = max(probes, key=lambda m: _mean(m, metric))
        layer = int(np.bincount(probe["layers_chosen"]).argmax())
        X = np.asarray(emb["mean"][:, layer], dtype=np.float32)
        how = projection_method("auto", len(X))
        with progress(f"[{task.name}] {how.upper()} map of layer {layer}", None):
            xy = project(X, how, seed)
        out["embedding_map"] = {"layer": layer, "pooling": "mean", "projection": how, "chosen_by": probe["name"],
                                "xy": xy}
    return out


def _mean(m: dict, metric: str) -> float:
    v = m["summary"][metric]["mean"]
    return -np.inf if v != v else float(v)


def load_any_task(spec: str, model_modality: str | None = None) -> tuple[str, Task]:
    """(modality, task) for a shipped name, a task YAML, a table or an h5ad (`file.h5ad:label_column`,
    `dataset:NAME:label_column`).

    Each modality says how surely a task is its own (see `Modality.evaluation`); the surest wins, and on
    a tie — a YAML or table that does not say — the model's modality decides how it is read.
    """
    found = modalities()
    for name, m in found.items():
        if spec in m.hooks().shipped_tasks():
            return name, m.hooks().load_task(spec)
    scores = {name: m.hooks().recognise_task(spec) for name, m in found.items()}
    best = max(scores.values())
    if model_modality is not None and scores.get(model_modality, 0) == best:
        chosen = model_modality
    elif best > 0:
        chosen = next(n for n, s in scores.items() if s == best)
    else:
        chosen = model_modality or next(iter(found))  # its loader says what is missing
    return chosen, found[chosen].hooks().load_task(spec)


def run_evaluation(cfg: EvaluateConfig) -> Path:
    """Evaluate every task of `cfg` on `cfg.device`; returns the output folder."""
    from biofm.models.device import on_device

    with on_device(cfg.device):
        return _run_evaluation(cfg)


def _run_evaluation(cfg: EvaluateConfig) -> Path:
    from biofm.eval.report import write_outputs
    from biofm.models.device import current_device

    model = tok = model_dir = None
    model_modality = None
    if cfg.model:
        from biofm.models.load import load_for_embedding, load_pretrained, resolve_model_dir
        from biofm.models.load import model_modality as model_modality_of

        model_dir = resolve_model_dir(cfg.model)  # a cached Hub id becomes its snapshot folder
        model_modality = model_modality_of(model_dir, cfg.modality)
        model, tok = load_for_embedding(model_dir, modality=model_modality, allow_pickle=cfg.allow_pickle)
    tasks = [load_any_task(t, model_modality) for t in cfg.tasks]
    control = None
    if model_dir is not None and cfg.control:
        control_dir = make_control_model(model_dir, Path(cfg.out) / "control-model", cfg.seed)
        # the twin shares the model's tokenizer object: a published one may live outside the model folder
        control = (control_dir, load_pretrained(control_dir).eval(), tok)
    results = []
    for modality, task in tasks:
        if model_modality is not None and modality != model_modality:
            raise BiofmError(f"{task.source}: a {modality} task cannot be scored with a {model_modality} model "
                             f"({model_dir})")
        results.append(evaluate_task(task, cfg, model_dir, model, tok, modality, control))
    verdicts = [r["verdict"] for r in results if r["verdict"]]
    overall = count_sentence([v["outcome"] for v in verdicts]) if verdicts else "no verdict (no model)"
    return write_outputs(Path(cfg.out), {"model": str(model_dir) if model_dir else None, "overall": overall,
                                         "config": cfg.model_dump(mode="json"), "device": str(current_device()),
                                         "tasks": results}, labels={task.name: task.labels for _, task in tasks})
