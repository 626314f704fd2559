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
engines that shard a layer's weights (FSDP: calling a layer's submodules directly would
skip their all-gather) take the full forward pass instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

SUPPORTED = ("modernbert", "bert", "esm")


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
    if cfg.model_type == "modernbert":
        return list(cfg.layer_types)[-1] == "full_attention"
    if cfg.model_type in ("bert", "esm"):
        return (not cfg.is_decoder and not cfg.add_cross_attention
                and getattr(cfg, "position_embedding_type", "absolute") == "absolute")
    return False


def hidden_at_targets(
    model: PreTrainedModel,
    encoder: nn.Module,
    input_ids: torch.Tensor,  # [B, L]
    attention_mask: torch.Tensor,  # [B, L] bool
    index: dict[str, torch.Tensor],  # from target_index
    sparse: bool,
    token_type_ids: torch.Tensor | None = None,  # [B, L], BERT only (cells carry the value bin there)
) -> torch.Tensor:
    """The encoder's last hidden state at the targets, [n, H], computed sparsely where supported."""
    kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    if sparse and supports(model):
        if model.config.model_type == "modernbert":
            return _modernbert(encoder, input_ids, attention_mask, index)
        return _bert_or_esm(encoder, input_ids, attention_mask, index, esm=model.config.model_type == "esm", **kw)
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state  # [B, L, H]
    return hidden.flatten(0, 1).index_select(0, index["flat"])


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, H] -> [B, heads, T, H / heads]"""
    return x.view(*x.shape[:2], heads, -1).transpose(1, 2)


def _gather_rows(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x [B, L, H] at positions [B, Q] -> [B, Q, H]"""
    return x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _key_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A bidirectional [B, 1, L, L] mask repeats one key mask per row; keep one row, [B, 1, 1, L]."""
    return None if mask is None else mask[:, :, :1, :]


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
    query = _heads(F.linear(_gather_rows(x, query_pos), weight[:width], None if bias is None else bias[:width]),
                   heads)  # [B, nh, Q, d]
    cos, sin = rope["full_attention"]  # [1, L, d]
    key = _rotate(key, cos.unsqueeze(1), sin.unsqueeze(1))
    query = _rotate(query, cos[0][query_pos].unsqueeze(1), sin[0][query_pos].unsqueeze(1))
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=_key_mask(masks["full_attention"]), scale=head_dim**-0.5,
        dropout_p=attn.attention_dropout if attn.training else 0.0,
    )  # [B, nh, Q, d]
    out = out.transpose(1, 2).reshape(batch * n_query, width).index_select(0, index["slot"])  # [n, H]
    residual = hidden.flatten(0, 1).index_select(0, index["flat"])  # [n, H]
    hidden = residual + attn.out_drop(attn.Wo(out))
    hidden = hidden + last.mlp(last.mlp_norm(hidden))
    return base.final_norm(hidden)  # [n, H]


def _bert_or_esm(base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 index: dict[str, torch.Tensor], esm: bool,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """BertModel / EsmModel (absolute positions, encoder only) with the last layer at the targets only.

    The two differ in where the layer norms sit: BERT normalises after each residual sum, ESM before
    each sub-block and once more after the last layer; ESM also scales queries instead of scores."""
    from transformers.masking_utils import create_bidirectional_mask

    cfg = base.config
    batch = input_ids.shape[0]
    if esm:  # ESM's embedding needs the mask (token dropout)
        hidden = base.embeddings(input_ids=input_ids, attention_mask=attention_mask)
    else:
        hidden = base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # [B, L, H]
    mask = create_bidirectional_mask(config=cfg, inputs_embeds=hidden, attention_mask=attention_mask)
    *body, last = base.encoder.layer
    for layer in body:
        hidden = layer(hidden, attention_mask=mask)

    attn = last.attention.self
    heads = attn.num_attention_heads
    x = last.attention.LayerNorm(hidden) if esm else hidden  # [B, L, H]
    key, value = _heads(attn.key(x), heads), _heads(attn.value(x), heads)  # [B, nh, L, d]
    query = _heads(attn.query(_gather_rows(x, index["query"])), heads)  # [B, nh, Q, d]
    if esm:
        query, scale, dropout = query * attn.attention_head_size**-0.5, 1.0, attn.dropout
    else:
        scale, dropout = attn.scaling, attn.dropout.p
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=_key_mask(mask), scale=scale, dropout_p=dropout if attn.training else 0.0,
    )  # [B, nh, Q, d]
    out = out.transpose(1, 2).reshape(batch * query.shape[2], -1).index_select(0, index["slot"])  # [n, H]
    residual = hidden.flatten(0, 1).index_select(0, index["flat"])  # [n, H]
    hidden = last.attention.output(out, residual)  # BERT: LayerNorm(dense + residual); ESM: dense + residual
    if not esm:
        return last.output(last.intermediate(hidden), hidden)  # [n, H]
    hidden = last.output(last.intermediate(last.LayerNorm(hidden)), hidden)
    norm = base.encoder.emb_layer_norm_after
    return norm(hidden) if norm is not None else hidden  # [n, H]
