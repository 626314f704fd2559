"""Padded batches of variable-length token-id lists, shared by embedding and fine-tuning."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from biofm.models.device import current_device


def _chunks(ids: list[list[int]], idx: np.ndarray, size: int, max_tokens: int | None) -> Iterator[np.ndarray]:
    """`idx` in order, cut into runs of at most `size` rows and, with `max_tokens`, at most that many padded
    tokens (rows x the run's longest); a row longer than `max_tokens` runs alone."""
    start = 0
    while start < len(idx):
        end, width = start, 0
        while end < len(idx) and end - start < size:
            w = max(width, len(ids[idx[end]]))
            if max_tokens is not None and end > start and (end - start + 1) * w > max_tokens:
                break
            end, width = end + 1, w
        yield idx[start:end]
        start = end


def pad_batches(
    ids: list[list[int]], idx: np.ndarray, pad: int, size: int, device: torch.device | None = None,
    max_tokens: int | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield (indices, input_ids [B, L], attention_mask [B, L]) for `idx` in chunks of at most `size` rows
    (and, with `max_tokens`, of at most that many padded tokens), right-padded, on `device` (default: the
    current one, biofm.models.device). Length-sorted `idx` with a token budget gives short inputs large
    batches and long ones small, at a bounded memory.

    The mask comes from each row's length, not from `ids != pad`: a model whose padding id is also a real
    token (GPT-2 pads with <|endoftext|>, which also starts every input) must still see that token."""
    device = device or current_device()
    for part in _chunks(ids, np.asarray(idx), size, max_tokens):
        width = max(len(ids[i]) for i in part)
        x = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for r, i in enumerate(part):
            x[r, : len(ids[i])] = torch.tensor(ids[i])
            mask[r, : len(ids[i])] = 1
        yield part, x.to(device), mask.to(device)
