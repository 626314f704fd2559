"""Padded batches of variable-length token-id lists, shared by embedding and fine-tuning."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from biofm.models.device import current_device


def pad_batches(
    ids: list[list[int]], idx: np.ndarray, pad: int, size: int, device: torch.device | None = None
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield (indices, input_ids [B, L], attention_mask [B, L]) for `idx` in chunks of `size`, right-padded,
    on `device` (default: the current one, biofm.models.device).

    The mask comes from each row's length, not from `ids != pad`: a model whose padding id is also a real
    token (GPT-2 pads with <|endoftext|>, which also starts every input) must still see that token."""
    device = device or current_device()
    for s in range(0, len(idx), size):
        part = idx[s:s + size]
        width = max(len(ids[i]) for i in part)
        x = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for r, i in enumerate(part):
            x[r, : len(ids[i])] = torch.tensor(ids[i])
            mask[r, : len(ids[i])] = 1
        yield part, x.to(device), mask.to(device)
