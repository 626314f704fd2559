"""The modality contract: what a modality plug-in gives the shared layers, and where plug-ins are found.

A modality (dna, cells, text, ...) is one package that registers one `Modality` under the entry-point
group `biofm.modalities` (see pyproject.toml), so a new modality — biofm's own or a third party's —
is one new package plus one line of registration. The shared layers (`train/`, `eval/`, `health/`,
`report/`, `models/`, `use/`, the CLI) find everything modality-specific through this object and
import no modality package; `tests/test_architecture.py` keeps it so.

References are "module:attribute" strings, imported only when used, so listing the modalities (for
`--help`, or a config's `modality:` key) stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from biofm.errors import BiofmError

GROUP = "biofm.modalities"


@dataclass(frozen=True)
class Modality:
    name: str
    description: str
    # pretraining: the config schema (a biofm.pretraining.PretrainBase subclass) and
    # prepare(cfg, preset, block) -> biofm.pretraining.Prepared (tokenizer, objective, data)
    pretrain_schema: str
    prepare: str
    # evaluation: a module with embeddings(task, cfg, model_dir, model, tok), model_methods(task, folds, emb,
    # cfg, model_dir, model, tok), baselines(cfg) and tables(task, cfg, emb), and with the task hooks
    # shipped_tasks() -> {name: yaml}, recognise_task(spec) -> 0/1/2 (no / could be / certainly) and
    # load_task(spec) -> Task; optionally EMBEDDING_MAP = True (the report maps its tasks' embeddings in 2-D)
    evaluation: str
    # its baselines' settings: the schema, and the `biofm evaluate` config key that holds them
    baseline_schema: str
    baseline_key: str
    # `biofm demo --modality NAME`: a module with pretrain_settings(out), eval_settings(run_dir) and
    # optionally after_pretraining(run_dir); and the run folder it writes by default
    demo: str
    demo_run_dir: str
    # model uses that only this modality has (e.g. DNA's score_variants): verb -> "module:function"
    verbs: dict[str, str] = field(default_factory=dict)
    # the model card's Hugging Face pipeline_tag: None = by architecture (fill-mask, or text-generation for
    # causal models); "feature-extraction" for inputs that are not text (cells, peaks): embeddings are
    # what such a model is for
    pipeline_tag: str | None = None

    def resolve(self, ref: str) -> Any:
        module, _, attr = ref.partition(":")
        obj = importlib.import_module(module)
        return getattr(obj, attr) if attr else obj

    def hooks(self) -> Any:
        """The evaluation module (embeddings, methods, baselines, tables, task hooks)."""
        return self.resolve(self.evaluation)

    def verb(self, name: str) -> Any:
        if name not in self.verbs:
            raise BiofmError(f"{name.replace('_', '-')} is not available for {self.name} models")
        return self.resolve(self.verbs[name])


@cache
def modalities() -> dict[str, Modality]:
    """Every registered modality by name, in registration order (the order ambiguous inputs try them)."""
    found: dict[str, Modality] = {}
    for ep in entry_points(group=GROUP):
        m = ep.load()
        if not isinstance(m, Modality) or m.name != ep.name:
            raise BiofmError(f"entry point {ep.name} = {ep.value} in group {GROUP} is not a Modality named {ep.name!r}")
        found[m.name] = m
    if not found:
        raise BiofmError(f"no modality is registered (entry-point group {GROUP}); reinstall biofm (pip install -e .)")
    return dict(sorted(found.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER)))


# biofm's own modalities first, in this order; plug-ins after them
ORDER = ("dna", "text", "cells", "atac", "multiome")


def get(name: str) -> Modality:
    found = modalities()
    if name not in found:
        raise BiofmError(f"modality {name!r}: choose one of {', '.join(found)}")
    return found[name]


def names() -> list[str]:
    return list(modalities())
