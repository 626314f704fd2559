"""Padded batches of variable-length token-id lists, shared by embedding and fine-tuning."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def pad_batches(
    ids: list[list[int]], idx: np.ndarray, pad: int, size: int
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield (indices, input_ids [B, L], attention_mask [B, L]) for `idx` in chunks of `size`."""
    for s in range(0, len(idx), size):
        part = idx[s:s + size]
        width = max(len(ids[i]) for i in part)
        x = torch.full((len(part), width), pad, dtype=torch.long)
        for r, i in enumerate(part):
            x[r, : len(ids[i])] = torch.tensor(ids[i])
        yield part, x, (x != pad).long()
