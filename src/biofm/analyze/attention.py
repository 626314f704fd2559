"""Attention by genomic element: which heads look at which kind of sequence (the Nucleotide Transformer's
analysis).

For every layer and head, over a set of regions: the share of attention mass that lands on key tokens
of each class, against that class's share of the tokens. enrichment = mass share / token share; 1 is
what a head that ignores the class would show, 2 means the class draws twice its share. Each token
takes the class of the base at its middle (its bases come from the tokenizer's offsets, so a k-mer
token covers k bases). Only real tokens count, as queries and as keys: the start token (<cls>, or a
causal model's end-of-text) often soaks up most of the attention as a no-op sink, so each query's
attention is renormalised over the real tokens, and the sink's share is reported on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from biofm.analyze.report import pyplot, save_png
from biofm.models.mlm import encoder_of

CAUSAL = ("gpt2", "llama")


def token_classes(tok: PreTrainedTokenizerBase, seq: str, base_codes: np.ndarray, limit: int
                  ) -> tuple[list[int], np.ndarray]:
    """(ids, class code per token) of `seq` (no specials), at most `limit` tokens; a token's class is that
    of its middle base."""
    enc = tok(seq, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])[:limit]
    mid = np.array([(a + b - 1) // 2 for a, b in enc["offset_mapping"][:limit]], dtype=np.int64)
    return ids, np.asarray(base_codes)[mid].astype(np.int64)


@torch.inference_mode()
def attention_enrichment(model: PreTrainedModel, tok: PreTrainedTokenizerBase, seqs: list[str],
                         base_codes: list[np.ndarray], n_codes: int, *, batch_size: int = 4) -> dict[str, Any]:
    """Attention shares of every layer and head by class over regions `seqs` (each with a class code per
    base, 0..n_codes-1). The model must have been loaded with eager attention.

    Returns numpy arrays: mass_share [layers, heads, n_codes] (sums to 1 over classes), token_share
    [n_codes], enrichment [layers, heads, n_codes] (NaN where a class has no tokens), sink_share
    [layers, heads] (the start token's mean share before renormalising), and n_tokens, n_regions.
    """
    limit = int(getattr(model.config, "max_position_embeddings", 512)) - 1
    causal = model.config.model_type in CAUSAL
    start = tok.eos_token_id if causal else tok.cls_token_id
    prefix = [start] if start is not None else []
    rows = [token_classes(tok, s, c, limit) for s, c in zip(seqs, base_codes, strict=True)]
    encoder = encoder_of(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    mass: torch.Tensor | None = None
    sink: torch.Tensor | None = None
    counts = np.zeros(n_codes, dtype=np.float64)
    n_queries = 0
    for b0 in range(0, len(rows), batch_size):
        part = rows[b0:b0 + batch_size]
        width = len(prefix) + max(len(ids) for ids, _ in part)
        ids_t = torch.full((len(part), width), pad, dtype=torch.long)
        attn_mask = torch.zeros((len(part), width), dtype=torch.long)
        real = torch.zeros((len(part), width), dtype=torch.bool)  # real tokens: queries and keys
        onehot = torch.zeros((len(part), width, n_codes), dtype=torch.float32)
        for r, (ids, codes) in enumerate(part):
            n = len(ids)
            ids_t[r, :len(prefix) + n] = torch.tensor(prefix + ids)
            attn_mask[r, :len(prefix) + n] = 1
            real[r, len(prefix):len(prefix) + n] = True
            onehot[r, torch.arange(len(prefix), len(prefix) + n), torch.from_numpy(codes)] = 1.0
            counts += np.bincount(codes, minlength=n_codes)
        n_queries += int(real.sum())
        dev = next(encoder.parameters()).device
        out = encoder(input_ids=ids_t.to(dev), attention_mask=attn_mask.to(dev), output_attentions=True)
        if out.attentions is None or any(a is None for a in out.attentions):
            raise RuntimeError("the model returned no attention weights; load it with attn_implementation='eager'")
        q = real[:, None, :, None].float()  # [B, 1, L(query), 1]
        k = real[:, None, None, :].float()  # [B, 1, 1, L(key)]
        layer_mass, layer_sink = [], []
        for att in out.attentions:  # one layer at a time: [B, heads, L(query), L(key)]
            att = att.float().cpu()
            on_real = att * q * k
            norm = on_real / on_real.sum(-1, keepdim=True).clamp_min(1e-30)  # each real query: 1 over real keys
            layer_mass.append(torch.einsum("bhqk,bkc->hc", norm, onehot))
            layer_sink.append((att[..., 0] * real[:, None, :].float()).sum(dim=(0, 2)) if prefix
                              else torch.zeros(att.shape[1]))
        per_class, sink_part = torch.stack(layer_mass), torch.stack(layer_sink)  # [layers, heads, C], [layers, heads]
        mass = per_class if mass is None else mass + per_class
        sink = sink_part if sink is None else sink + sink_part
    if mass is None or sink is None:
        raise ValueError("attention_enrichment needs at least one region")
    mass_share = (mass / max(n_queries, 1)).double().numpy()
    token_share = counts / max(counts.sum(), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        enrichment = np.where(token_share > 0, mass_share / token_share, np.nan)
    return {"mass_share": mass_share, "token_share": token_share, "enrichment": enrichment,
            "sink_share": (sink / max(n_queries, 1)).double().numpy(), "n_tokens": int(counts.sum()),
            "n_regions": len(rows)}


def highlights(result: dict[str, Any], names: list[str], *, min_token_share: float = 0.01, top: int = 5
               ) -> list[dict[str, Any]]:
    """The most enriched (layer, head, class) cells, among classes holding at least `min_token_share` of
    the tokens (a class of three tokens makes a noisy ratio)."""
    enr, share = result["enrichment"], result["token_share"]
    cells = [(float(enr[ly, h, c]), ly, h, c) for ly in range(enr.shape[0]) for h in range(enr.shape[1])
             for c in range(enr.shape[2]) if share[c] >= min_token_share and np.isfinite(enr[ly, h, c])]
    cells.sort(reverse=True)
    return [{"layer": ly + 1, "head": h, "class": names[c], "enrichment": e,
             "mass_share": float(result["mass_share"][ly, h, c]), "token_share": float(share[c])}
            for e, ly, h, c in cells[:top]]


def plot_enrichment(result: dict[str, Any], names: list[str], dest: Path) -> None:
    """One heatmap per class present: log2 enrichment, layers (rows, 1 = first) x heads (columns)."""
    plt = pyplot()
    enr = result["enrichment"]
    present = [c for c in range(len(names)) if result["token_share"][c] > 0]
    cols = min(len(present), 5)
    rows = (len(present) + cols - 1) // cols
    layers, heads = enr.shape[:2]
    cell_w, cell_h = max(2.4, 0.5 * heads + 0.9), max(1.8, 0.38 * layers + 1.0)
    fig, axes = plt.subplots(rows, cols, figsize=(cell_w * cols + 1.2, cell_h * rows + 0.6), dpi=100,
                             squeeze=False, layout="constrained")
    with np.errstate(divide="ignore"):
        log2 = np.log2(enr)
    finite = log2[np.isfinite(log2)]
    lim = float(np.abs(finite).max()) if finite.size else 1.0
    lim = max(lim, 0.1)
    image = None
    for i, ax in enumerate(axes.flat):
        if i >= len(present):
            ax.axis("off")
            continue
        c = present[i]
        image = ax.imshow(log2[:, :, c], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(f"{names[c]} ({result['token_share'][c]:.1%} of tokens)", fontsize=8)
        ax.set_xlabel("head", fontsize=7)
        ax.set_ylabel("layer", fontsize=7)
        ax.set_xticks(range(heads))
        ax.set_yticks(range(layers), [str(ly + 1) for ly in range(layers)])
        ax.tick_params(labelsize=6)
        if layers * heads <= 64:
            for ly in range(layers):
                for h in range(heads):
                    if np.isfinite(enr[ly, h, c]):
                        ax.text(h, ly, f"{enr[ly, h, c]:.2f}", ha="center", va="center", fontsize=6)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, label="log2 enrichment\n(mass share / token share)")
    fig.suptitle(f"attention by element class, {result['n_regions']} regions, {result['n_tokens']:,} tokens",
                 fontsize=9)
    save_png(fig, dest)
    plt.close(fig)
