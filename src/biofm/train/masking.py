"""BERT masking, seeded per example.

Each example's mask comes from its own RNG keyed by (seed, example number), so the masks do not
depend on the batch size, the number of processes or where a run was resumed: the same global
step sees the same masks whatever the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaskSpec:
    mask_id: int
    special_ids: tuple[int, ...]  # never selected (cls, pad, eos, ...)
    random_ids: np.ndarray  # candidates for the 10% random replacement (real tokens only)
    prob: float = 0.15
    mask_frac: float = 0.8  # of selected: replaced by <mask>
    random_frac: float = 0.1  # of selected: replaced by a random token; the rest stay unchanged


def mask_batch(
    ids: np.ndarray, example_keys: np.ndarray, seed: int, spec: MaskSpec, *, honest: bool = False,
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (inputs, selected) for token ids [B, L].

    `honest=True` replaces every selected token by <mask> (evaluation): with the 80/10/10 rule a model
    can copy the 10% unchanged tokens and score below the unigram baseline without learning context.
    `eligible` ([B, L] bool) says which positions may be selected; default: every non-special token.
    (Cells mask value bins this way: `ids` are then the value types, eligible where a gene has a value.)
    """
    inputs = ids.copy()
    selected = np.zeros(ids.shape, dtype=bool)
    if eligible is None:
        eligible = ~np.isin(ids, np.asarray(spec.special_ids))
    for row, key in enumerate(example_keys):
        rng = np.random.default_rng([seed, int(key)])
        u = rng.random((3, ids.shape[1]))
        sel = (u[0] < spec.prob) & eligible[row]
        selected[row] = sel
        if honest:
            inputs[row, sel] = spec.mask_id
            continue
        to_mask = sel & (u[1] < spec.mask_frac)
        to_random = sel & ~to_mask & (u[1] < spec.mask_frac + spec.random_frac)
        inputs[row, to_mask] = spec.mask_id
        n_rand = int(to_random.sum())
        if n_rand:
            pick = (u[2][to_random] * len(spec.random_ids)).astype(np.int64)
            inputs[row, to_random] = spec.random_ids[pick]
    return inputs, selected
