"""biofm from Python: the lifecycle's verbs as functions, for notebooks and scripts.

    import biofm
    run = biofm.pretrain("examples/configs/dna_tiny.yaml", train__steps=200)
    run.verdict                                   # 'learning'
    table = biofm.evaluate(run, ["ecoli-elements", "promoter"], folds=5)
    table.attrs["verdicts"]                       # one sentence per task
    biofm.embed(adata, "runs/demo-cells")         # adata.obsm["X_biofm"], in place (scanpy style)
    X = biofm.embed(["ACGT...", "TTGA..."], run)  # [n, hidden] array

These are the functions the command line calls: a CLI verb and its function share one code path
(the same config schema, checks, outputs and one-line errors). Config overrides are keyword arguments
with `__` between levels (`train__steps=200` is `--set train.steps=200`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biofm.errors import BiofmError

if TYPE_CHECKING:
    import pandas as pd

    from biofm.eval.evaluate import EvaluateConfig
    from biofm.pretraining import PretrainBase


def overrides_from(kwargs: dict[str, Any]) -> list[str]:
    """`train__steps=200` → ["train.steps=200"] (values written as JSON, which YAML reads back exactly)."""
    return [f"{key.replace('__', '.')}={json.dumps(value)}" for key, value in kwargs.items()]


@dataclass
class Run:
    """A finished pretraining run folder: its model, summary and health verdict."""

    path: Path
    summary: dict[str, Any] = field(repr=False)

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def verdict(self) -> str:
        return (self.summary.get("health") or {}).get("verdict", "unknown")

    @property
    def eval_loss(self) -> float:
        return float(self.summary["final_eval_loss"])

    def __fspath__(self) -> str:  # a Run can be passed wherever a model folder is expected
        return str(self.model)

    @classmethod
    def load(cls, path: str | Path) -> Run:
        path = Path(path)
        if not (path / "summary.json").is_file():
            raise BiofmError(f"{path}: no summary.json; is this a finished biofm run folder?")
        return cls(path, json.loads((path / "summary.json").read_text()))


def pretrain_config(config: str | Path | dict[str, Any] | PretrainBase, **overrides: Any) -> PretrainBase:
    """The validated pretraining config from a YAML path, a dict or a config object, with overrides."""
    from biofm import config as cfgmod
    from biofm.pretraining import PretrainBase, build_config_for, load_config

    if isinstance(config, PretrainBase):
        data = config.model_dump(mode="json")
        return build_config_for(cfgmod.apply_overrides(data, overrides_from(overrides)), "config object")
    if isinstance(config, dict):
        return build_config_for(cfgmod.apply_overrides(dict(config), overrides_from(overrides)), "config dict")
    return load_config(config, overrides_from(overrides))


def pretrain(config: str | Path | dict[str, Any] | PretrainBase, *, resume: bool = False, overwrite: bool = False,
             allow_changes: Sequence[str] = (), progress: bool = True, **overrides: Any) -> Run:
    """Pretrain a model (as `biofm pretrain`); returns the run (path, model, summary, verdict)."""
    from biofm.pretraining import run

    cfg = pretrain_config(config, **overrides)
    return Run.load(run(cfg, resume=resume, overwrite=overwrite, progress=progress,
                        allow_changes=list(allow_changes)))


def evaluate_config(model: str | Path | Run | None, tasks: str | Sequence[str], *, out: str | Path | None = None,
                    config: str | Path | dict[str, Any] | None = None, set_: Sequence[str] = (),
                    **overrides: Any) -> EvaluateConfig:
    """The validated evaluation config: a YAML/dict `config` (optional), the model and tasks, then `--set`
    style overrides (`set_`) and keyword overrides. Without `out`, results go beside the model (`RUN/eval`)."""
    from biofm import config as cfgmod
    from biofm.eval.evaluate import EvaluateConfig

    data: dict[str, Any] = {}
    if isinstance(config, dict):
        data = dict(config)
    elif config is not None:
        data = cfgmod.read_yaml(config)
    if model is not None:
        data["model"] = str(Path(model))
    if tasks:
        data["tasks"] = [tasks] if isinstance(tasks, str) else list(tasks)
    if out is not None:
        data["out"] = str(out)
    elif "out" not in data and model is not None:
        where = Path(model)
        if where.exists():
            data["out"] = str((where.parent if where.name == "model" else where) / "eval")
        else:  # a cached Hub id (org/name): results go to ./eval-org_name, not into a folder named like it
            data["out"] = f"eval-{str(model).replace('/', '_')}"
    data = cfgmod.apply_overrides(data, [*set_, *overrides_from(overrides)])
    cfg = cfgmod.build(EvaluateConfig, data, str(config) if isinstance(config, (str, Path)) else "evaluate options")
    if not cfg.tasks:
        raise BiofmError("no task given: pass --task TASK.yaml, a table, FILE.h5ad:LABEL or a shipped task name "
                         "(tasks=[...] from Python)")
    return cfg


def evaluate(model: str | Path | Run | None, tasks: str | Sequence[str], *, out: str | Path | None = None,
             config: str | Path | dict[str, Any] | None = None, **overrides: Any) -> pd.DataFrame:
    """Evaluate against the baselines (as `biofm evaluate`). Returns `results.csv` as a DataFrame (one row
    per task and method: mean and s.d. of every metric over folds), with `attrs["verdicts"]` (one sentence
    per task, and the pretraining gain over the random-weights control), `attrs["results"]` (all of
    results.json) and `attrs["out"]` (the folder with report.html)."""
    import pandas as pd

    from biofm.eval.evaluate import run_evaluation

    dest = run_evaluation(evaluate_config(model, tasks, out=out, config=config, **overrides))
    results = json.loads((dest / "results.json").read_text())
    table = pd.read_csv(dest / "results.csv")
    table.attrs["verdicts"] = [s for t in results["tasks"] for s in (
        (t.get("verdict") or {}).get("sentence"), t.get("control_sentence")) if s]
    table.attrs["results"] = results
    table.attrs["out"] = dest
    return table


def embed(data: Any, model: str | Path | Run, *, key_added: str = "X_biofm", layer: int = -1,
          pooling: str = "mean", copy: bool = False, batch_size: int = 64, layer_name: str | None = None,
          gene_column: str | None = None, modality: str | None = None, long_sequences: str = "error",
          device: str = "auto", allow_pickle: bool = False) -> Any:
    """Embeddings from a biofm model.

    - an AnnData (cell model): `obsm[key_added]` (mean-pooled) and `obsm[key_added + "_cls"]` of `layer`
      are written in place and None is returned (scanpy's convention); with `copy=True` a new AnnData is
      returned and `data` is untouched. `layer_name` / `gene_column` choose the counts and the gene ids.
    - sequences or texts (a list of strings), or a path to a FASTA / table / `dataset:NAME`: an array
      [n, hidden] of `layer` with `pooling` "mean" or "cls" (causal models: "last").

    `model` may be a published checkpoint folder or a cached Hub id (`InstaDeepAI/...`); `modality` overrides
    the modality inferred from the folder. Sequences longer than the model's context are an error unless
    `long_sequences` is "truncate" or "windows" (as in evaluation). `device`: auto | cpu | cuda | mps.
    `allow_pickle` reads a published model's pickled files (Geneformer's dictionaries): only files you trust.
    """
    from biofm.models.device import on_device

    with on_device(device):
        return _embed(data, model, key_added=key_added, layer=layer, pooling=pooling, copy=copy,
                      batch_size=batch_size, layer_name=layer_name, gene_column=gene_column, modality=modality,
                      long_sequences=long_sequences, allow_pickle=allow_pickle)


def _embed(data: Any, model: str | Path | Run, *, key_added: str, layer: int, pooling: str, copy: bool,
           batch_size: int, layer_name: str | None, gene_column: str | None, modality: str | None,
           long_sequences: str, allow_pickle: bool) -> Any:
    from biofm.modality import get as get_modality
    from biofm.models.load import model_modality, resolve_model_dir

    model_dir = resolve_model_dir(Path(model))
    if type(data).__name__ == "AnnData":
        verb = get_modality(model_modality(model_dir, modality)).verb("embed_adata")
        target = data.copy() if copy else data
        verb(model_dir, target, key_added=key_added, layer=layer, layer_name=layer_name, gene_column=gene_column,
             batch_size=batch_size, **({"allow_pickle": True} if allow_pickle else {}))
        return target if copy else None
    from biofm.use.embed import sequence_embeddings

    if isinstance(data, (str, Path)):
        from biofm.datasets import resolve

        _, seqs = get_modality(model_modality(model_dir, modality)).verb("read_sequences")(resolve(str(data)))
    else:
        seqs = [str(s) for s in data]
    emb = sequence_embeddings(model_dir, seqs, batch_size=batch_size, modality=modality, allow_pickle=allow_pickle,
                              long_sequences=long_sequences, source=data if isinstance(data, (str, Path)) else "input")
    if pooling == "cls" and "cls" not in emb:
        pooling = "last"  # a causal model's summary token is its last
    if pooling not in emb:
        raise BiofmError(f"pooling {pooling!r}: this model offers {', '.join(emb)}")
    n_layers = emb[pooling].shape[1]
    if not -n_layers <= layer < n_layers:
        raise BiofmError(f"layer {layer}: the model has layers 0..{n_layers - 1} (0 = embeddings)")
    return np.ascontiguousarray(emb[pooling][:, layer])
