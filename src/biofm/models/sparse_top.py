"""The last encoder layer computed only at the positions a masked-LM loss reads.

In masked-LM training about 15% of positions carry a target and the last layer's output anywhere
else is thrown away. Its keys and values are still needed at every position (the targets attend to
them), but its queries, attention, output projection, feed-forward and final norm are needed only
at the targets. Computing those there removes about four fifths of one layer's work, forward and
backward, with the same result up to float rounding — the same idea as computing the vocabulary
logits only at masked positions, taken one layer deeper.

The layer is recomputed from its own modules and weights, so checkpoints are untouched. It is an
independent implementation of one transformers class's layer, which a transformers release could
change: tests compare it with the stock forward pass for every supported class, so such a change
fails the test suite instead of silently changing the loss. Unsupported classes, layer types, and
engines that shard a layer's weights (FSDP, ZeRO-3: calling a layer's submodules directly would
skip their all-gather) take the full forward pass instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

SUPPORTED = ("modernbert",)


def target_index(selected: np.ndarray) -> dict[str, torch.Tensor]:
    """Index tensors, built on the host at collate time so the forward pass needs no device sync.

    `selected` [B, L] bool marks the target positions. Targets are numbered in row-major order (the
    order of `hidden[selected]`). Returns
      flat  [n]        b * L + position: a target's row in hidden.view(B * L, H)
      query [B, Q]     each row's target positions, padded with 0 to Q = most targets in a row
      slot  [n]        b * Q + j: a target's row in the padded [B * Q, H] query output
    """
    rows, cols = np.nonzero(selected)  # row-major, like boolean indexing
    per_row = selected.sum(axis=1)
    width = max(int(per_row.max(initial=0)), 1)
    starts = np.concatenate([[0], np.cumsum(per_row)[:-1]])
    j = np.arange(len(rows)) - starts[rows]  # a target's rank within its row
    query = np.zeros((selected.shape[0], width), dtype=np.int64)
    query[rows, j] = cols
    length = selected.shape[1]
    return {
        "flat": torch.from_numpy((rows * length + cols).astype(np.int64)),
        "query": torch.from_numpy(query),
        "slot": torch.from_numpy((rows * width + j).astype(np.int64)),
    }


def supports(model: PreTrainedModel) -> bool:
    cfg = model.config
    if cfg.model_type not in SUPPORTED:
        return False
    return list(cfg.layer_types)[-1] == "full_attention"


def hidden_at_targets(
    model: PreTrainedModel,
    encoder: nn.Module,
    input_ids: torch.Tensor,  # [B, L]
    attention_mask: torch.Tensor,  # [B, L] bool
    index: dict[str, torch.Tensor],  # from target_index
    sparse: bool,
) -> torch.Tensor:
    """The encoder's last hidden state at the targets, [n, H], computed sparsely where supported."""
    if sparse and supports(model):
        return _modernbert(encoder, input_ids, attention_mask, index)
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, H]
    return hidden.flatten(0, 1).index_select(0, index["flat"])


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as transformers applies it (in float32, rotate-half convention)."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


def _modernbert(base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                index: dict[str, torch.Tensor]) -> torch.Tensor:
    """ModernBertModel.forward with its last layer evaluated at the targets only."""
    from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

    cfg = base.config
    batch, length = input_ids.shape
    hidden = base.embeddings(input_ids=input_ids)  # [B, L, H]
    mask_kwargs = {"config": cfg, "inputs_embeds": hidden, "attention_mask": attention_mask}
    masks = {"full_attention": create_bidirectional_mask(**mask_kwargs)}
    position_ids = torch.arange(length, device=input_ids.device).unsqueeze(0)  # [1, L]
    rope = {kind: base.rotary_emb(hidden, position_ids, kind) for kind in set(cfg.layer_types)}
    if "sliding_attention" in rope:
        masks["sliding_attention"] = create_bidirectional_sliding_window_mask(**mask_kwargs)
    *body, last = base.layers
    for layer in body:
        hidden = layer(hidden, attention_mask=masks[layer.attention_type],
                       position_embeddings=rope[layer.attention_type])

    attn = last.attn
    heads, head_dim = cfg.num_attention_heads, attn.head_dim
    width = heads * head_dim
    x = last.attn_norm(hidden)  # [B, L, H]
    weight, bias = attn.Wqkv.weight, attn.Wqkv.bias  # rows: queries, keys, values
    kv = F.linear(x, weight[width:], None if bias is None else bias[width:])  # [B, L, 2H]
    key, value = kv.view(batch, length, 2, heads, head_dim).transpose(1, 3).unbind(dim=2)  # [B, nh, L, d]
    query_pos = index["query"]  # [B, Q]
    n_query = query_pos.shape[1]
    xq = x.gather(1, query_pos.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # [B, Q, H]
    query = F.linear(xq, weight[:width], None if bias is None else bias[:width])
    query = query.view(batch, n_query, heads, head_dim).transpose(1, 2)  # [B, nh, Q, d]
    cos, sin = rope["full_attention"]  # [1, L, d]
    key = _rotate(key, cos.unsqueeze(1), sin.unsqueeze(1))
    query = _rotate(query, cos[0][query_pos].unsqueeze(1), sin[0][query_pos].unsqueeze(1))
    key_mask = masks["full_attention"]  # None, or [B, 1, L, L] whose rows are all the same key mask
    if key_mask is not None:
        key_mask = key_mask[:, :, :1, :]
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=key_mask, scale=head_dim**-0.5,
        dropout_p=attn.attention_dropout if attn.training else 0.0,
    )  # [B, nh, Q, d]
    out = out.transpose(1, 2).reshape(batch * n_query, width).index_select(0, index["slot"])  # [n, H]
    residual = hidden.flatten(0, 1).index_select(0, index["flat"])  # [n, H]
    hidden = residual + attn.out_drop(attn.Wo(out))
    hidden = hidden + last.mlp(last.mlp_norm(hidden))
    return base.final_norm(hidden)  # [n, H]
