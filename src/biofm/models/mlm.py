"""Uniform access to the encoder and the masked-LM head of the supported architectures.

The trainer computes logits only at masked positions (a [n_masked, V] matmul instead of
[B, L, V]); for that it needs the encoder and the head separately, which each transformers class
names differently.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel


def split_mlm(model: PreTrainedModel) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """(encoder, head): encoder(input_ids, attention_mask).last_hidden_state -> head -> logits."""
    kind = model.config.model_type
    if kind == "modernbert":
        return model.model, lambda h: model.decoder(model.head(h))
    if kind == "esm":
        return model.esm, model.lm_head
    if kind in ("bert", "roberta"):
        base = model.bert if kind == "bert" else model.roberta
        return base, model.cls if kind == "bert" else model.lm_head
    raise ValueError(f"masked-LM head of model type {kind!r} is not supported")


def encoder_of(model: PreTrainedModel) -> nn.Module:
    """The transformer body (hidden states out) of a masked or causal LM."""
    if model.config.model_type in ("gpt2", "llama"):
        return model.base_model
    return split_mlm(model)[0]


def masked_logits(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, selected: torch.Tensor
) -> torch.Tensor:
    """Logits [n_selected, V] at the positions where `selected` [B, L] is True (row-major order),
    computed as training computes them: the last layer only at those positions where supported."""
    from biofm.models.sparse_top import hidden_at_targets, target_index

    encoder, head = split_mlm(model)
    index = {k: v.to(input_ids.device) for k, v in target_index(selected.cpu().numpy()).items()}
    return head(hidden_at_targets(model, encoder, input_ids, attention_mask.bool(), index, sparse=True))


def pool_layers(hidden_states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor, *, last: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The one pooling of per-layer hidden states: (mean over the real tokens, summary token), each
    [B, n_layers + 1, H] in float32. The summary token is the first position (<cls>) for encoders, or with
    `last` the last real token (causal models, right padding), whose state has seen the whole input."""
    states = torch.stack(hidden_states, dim=1).float()  # [B, n_layers + 1, L, H]
    mask = attention_mask[:, None, :, None].float()
    mean = (states * mask).sum(2) / mask.sum(2).clamp_min(1.0)
    if last:
        end = attention_mask.long().sum(1) - 1  # [B]
        summary = states[torch.arange(len(end), device=end.device), :, end, :]
    else:
        summary = states[:, :, 0, :]
    return mean, summary


@torch.no_grad()
def layer_embeddings(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean-pooled hidden states of every layer, [B, n_layers + 1, H] (index 0 = embeddings)."""
    encoder = encoder_of(model)
    out = encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return pool_layers(out.hidden_states, attention_mask)[0]
