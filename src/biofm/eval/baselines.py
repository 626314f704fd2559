"""Name -> baseline registries, shared by every modality (DNA, text, cells).

Each modality keeps its own registry of `fn(task, folds, seed, cfg)` and its own config class; these
two helpers give all of them the same lookup and the same one-line error for an unknown name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from biofm.eval.types import Fold, FoldPrediction, Method, Task

__all__ = ["check_known", "method_from"]


def _unknown(kind: str, name: str, registry: Mapping[str, Any]) -> str:
    return f"unknown {kind} {name!r}; known: {', '.join(registry)}"


def check_known(names: Iterable[str], registry: Mapping[str, Any], kind: str) -> None:
    """Raise ValueError (what a pydantic validator should raise) naming the first name not in `registry`."""
    for name in names:
        if name not in registry:
            raise ValueError(_unknown(kind, name, registry))


def method_from(
    registry: Mapping[str, Callable[[Task, list[Fold], int, Any], list[FoldPrediction]]],
    name: str,
    cfg: Any,
    kind: str,
) -> Method:
    """The named baseline as a plain `Method` (task, folds, seed), with its knobs bound to `cfg`."""
    if name not in registry:
        raise KeyError(_unknown(kind, name, registry))
    fn = registry[name]

    def method(task: Task, folds: list[Fold], seed: int) -> list[FoldPrediction]:
        return fn(task, folds, seed, cfg)

    method.__name__ = name
    return method
