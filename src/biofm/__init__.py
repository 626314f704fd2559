"""biofm: pretrain, diagnose, evaluate and use transformer foundation models on biological data.

From Python (the same code paths as the `biofm` command; see `biofm.api`):

    import biofm
    run = biofm.pretrain("examples/configs/dna_tiny.yaml", train__steps=200)
    table = biofm.evaluate(run, ["ecoli-elements"], folds=5)
    biofm.embed(adata, "runs/demo-cells")

The verbs are imported on first use, so `import biofm` (and every CLI start) stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("pretrain", "evaluate", "embed", "evaluate_config", "Run")


def __getattr__(name: str) -> Any:
    if name in _API:
        from biofm import api

        return getattr(api, name)
    if name == "dataset_path":
        from biofm.datasets import dataset_path

        return dataset_path
    raise AttributeError(f"module 'biofm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, "dataset_path"])


__all__ = ["Run", "__version__", "dataset_path", "embed", "evaluate", "evaluate_config", "pretrain"]
