"""Likelihood track: how well the model predicts each position of a region, from its context.

Masked LMs: every token of the region is hidden in turn and scored from the context around it, a
window of the model's context (max tokens - 1 after <cls>) centred on the hidden token, shifted inward
at the record's ends. Each masked copy is one row; many rows go through one forward pass, and the
vocabulary logits are computed at the hidden position only (`biofm.models.mlm.masked_logits`). Causal
LMs: the next-token log-likelihood of each token after up to half a context of preceding tokens, one
pass per chunk of tokens. Either way the log-softmax runs over the tokenizer's real tokens (no special
tokens, no vocabulary padding rows), as `biofm score-variants` does, in nats.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from biofm.analyze.report import pyplot, save_png
from biofm.models.mlm import masked_logits

CAUSAL = ("gpt2", "llama")


def real_token_ids(tok: PreTrainedTokenizerBase) -> torch.Tensor:
    special = set(tok.all_special_ids)
    return torch.tensor([i for i in range(len(tok)) if i not in special], dtype=torch.long)


def tokens_with_offsets(tok: PreTrainedTokenizerBase, text: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids [n], offsets [n, 2]) of `text` without special tokens: token i covers text[start:end]."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    return np.asarray(enc["input_ids"], dtype=np.int64), offsets


def context_start(j: int, n: int, width: int) -> int:
    """First token of the `width`-token context centred on token j of n (shifted inward at the ends)."""
    return max(0, min(j - width // 2, n - width))


@torch.inference_mode()
def likelihood_track(model: PreTrainedModel, tok: PreTrainedTokenizerBase, seq: str, start: int, end: int, *,
                     batch_size: int = 128) -> dict[str, Any]:
    """Per-token log-likelihood of the tokens of seq[start:end] (0-based, half-open; `seq` is the whole
    record, whose bases around the region give the context).

    Returns token_start / token_end (0-based, on the record), loglik (nats), kind, seconds,
    positions_per_s (tokens scored per second) and context_tokens.
    """
    width = int(getattr(model.config, "max_position_embeddings", 512)) - 1  # tokens after the start token
    longest = max((len(t) for t, i in tok.get_vocab().items() if i not in set(tok.all_special_ids)), default=1)
    lo, hi = max(0, start - width * longest), min(len(seq), end + width * longest)  # enough bases for any context
    ids, offsets = tokens_with_offsets(tok, seq[lo:hi])
    offsets = offsets + lo
    inside = np.flatnonzero((offsets[:, 0] >= start) & (offsets[:, 0] < end))
    real = real_token_ids(tok)
    to_real = torch.full((max(int(real.max()) + 1, int(ids.max()) + 1),), -1, dtype=torch.long)
    to_real[real] = torch.arange(len(real))
    t0 = time.perf_counter()
    causal = model.config.model_type in CAUSAL
    if causal:
        ll = _causal(model, tok, ids, inside, width, batch_size, real, to_real)
    else:
        ll = _masked(model, tok, ids, inside, width, batch_size, real, to_real)
    seconds = time.perf_counter() - t0
    return {"token_start": offsets[inside, 0], "token_end": offsets[inside, 1], "loglik": ll,
            "kind": "causal next-token" if causal else "masked, one position at a time", "seconds": seconds,
            "positions_per_s": len(inside) / max(seconds, 1e-9), "context_tokens": width,
            "uniform_loglik": -float(np.log(len(real)))}


def _masked(model: PreTrainedModel, tok: PreTrainedTokenizerBase, ids: np.ndarray, inside: np.ndarray, width: int,
            batch_size: int, real: torch.Tensor, to_real: torch.Tensor) -> np.ndarray:
    n = len(ids)
    span = min(width, n)
    ids_t = torch.from_numpy(ids)
    out = np.empty(len(inside), dtype=np.float64)
    for b0 in range(0, len(inside), batch_size):
        part = inside[b0:b0 + batch_size]
        rows = torch.empty((len(part), span + 1), dtype=torch.long)
        selected = torch.zeros_like(rows, dtype=torch.bool)
        for r, j in enumerate(part.tolist()):
            s = context_start(j, n, span)
            rows[r, 0] = tok.cls_token_id
            rows[r, 1:] = ids_t[s:s + span]
            rows[r, j - s + 1] = tok.mask_token_id
            selected[r, j - s + 1] = True
        dev = model.device
        logits = masked_logits(model, rows.to(dev), torch.ones_like(rows).to(dev), selected.to(dev)
                               ).float().cpu()  # [rows, V], row order
        logp = F.log_softmax(logits[:, real], dim=-1)
        truth = to_real[ids_t[torch.from_numpy(part)]]  # -1: not a real token (an unknown), scored NaN
        got = logp[torch.arange(len(part)), truth.clamp_min(0)].double().numpy()
        out[b0:b0 + len(part)] = np.where(truth.numpy() >= 0, got, np.nan)
    return out


def _causal(model: PreTrainedModel, tok: PreTrainedTokenizerBase, ids: np.ndarray, inside: np.ndarray, width: int,
            batch_size: int, real: torch.Tensor, to_real: torch.Tensor) -> np.ndarray:
    """Chunks of region tokens, each after up to width // 2 tokens of left context: one row per chunk."""
    ctx = width // 2
    step = width - ctx
    ids_t = torch.from_numpy(ids)
    start_id = tok.eos_token_id if tok.eos_token_id is not None else tok.bos_token_id
    chunks = [inside[i:i + step] for i in range(0, len(inside), step)]
    out: list[np.ndarray] = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for b0 in range(0, len(chunks), max(1, batch_size // 8)):
        part = chunks[b0:b0 + max(1, batch_size // 8)]
        firsts = [max(0, int(c[0]) - ctx) for c in part]
        lengths = [int(c[-1]) + 1 - f for c, f in zip(part, firsts, strict=True)]
        rows = torch.full((len(part), max(lengths) + 1), pad, dtype=torch.long)
        mask = torch.zeros_like(rows)
        for r, (f, n) in enumerate(zip(firsts, lengths, strict=True)):
            rows[r, 0] = start_id
            rows[r, 1:n + 1] = ids_t[f:f + n]
            mask[r, :n + 1] = 1
        logits = model(input_ids=rows.to(model.device), attention_mask=mask.to(model.device)).logits
        logp = F.log_softmax(logits.float().cpu()[..., real], dim=-1)
        for r, (c, f) in enumerate(zip(part, firsts, strict=True)):
            pos = torch.from_numpy(c - f)  # logits at input position i predict input i + 1 = token f + i
            truth = to_real[ids_t[torch.from_numpy(c)]]
            got = logp[r, pos, truth.clamp_min(0)].double().numpy()
            out.append(np.where(truth.numpy() >= 0, got, np.nan))
    return np.concatenate(out) if out else np.empty(0)


def plot_track(track: dict[str, Any], record: str, start: int, end: int,
               features: list[tuple[int, int, str, str]], genes: list[tuple[int, int, str]], class_order: list[str],
               dest: Path) -> None:
    """Log-likelihood per base (each base carries its token's value) over the annotation: class features as
    boxes, + strand above the line, - strand below, genes as grey spans."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.2), dpi=100, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.3]})
    x0 = start + 1  # 1-based coordinates on the axis
    per_base = np.full(end - start, np.nan)
    for a, b, v in zip(track["token_start"], track["token_end"], track["loglik"], strict=True):
        per_base[max(a, start) - start:min(b, end) - start] = v
    xs = np.arange(x0, x0 + len(per_base))
    top.plot(xs, per_base, lw=0.4, color="#555", label="per position")
    win = min(25, max(1, len(per_base) // 20))
    if len(per_base) >= win > 1:
        ok = np.isfinite(per_base)
        kernel = np.ones(win)
        with np.errstate(invalid="ignore"):  # a running mean that shrinks its window at the ends
            smooth = (np.convolve(np.where(ok, per_base, 0.0), kernel, mode="same")
                      / np.convolve(ok.astype(float), kernel, mode="same"))
        top.plot(xs, smooth, lw=1.2, color="C3", label=f"{win}-bp mean")
    top.axhline(track["uniform_loglik"], color="black", lw=0.8, ls=":",
                label=f"uniform over the {round(np.exp(-track['uniform_loglik']))} tokens")
    top.set_ylabel("log-likelihood (nats)")
    top.set_title(f"{record}:{x0:,}-{end:,}: {track['kind']} log-likelihood, "
                  f"{track['positions_per_s']:,.0f} positions/s", fontsize=9)
    top.legend(fontsize=7, loc="lower left", ncol=3)
    cmap = plt.get_cmap("tab10")
    colour = {c: cmap(i % 10) for i, c in enumerate(class_order)}
    for a, b, strand in genes:
        if a < end and b > start:
            y = 0.55 if strand == "+" else -0.55
            bottom.plot([max(a, start) + 1, min(b, end)], [y, y], color="#bbb", lw=1)
    shown: set[str] = set()
    for a, b, strand, cls in features:
        y = 0.15 if strand == "+" else (-0.85 if strand == "-" else -0.35)
        bottom.add_patch(plt.Rectangle((max(a, start) + 1, y), min(b, end) - max(a, start), 0.7, fc=colour[cls],
                                       label=None if cls in shown else cls, alpha=0.85, ec="white", lw=0.5))
        shown.add(cls)
    bottom.axhline(0, color="black", lw=0.5)
    bottom.set_ylim(-1, 1)
    bottom.set_yticks([0.5, -0.5], ["+", "-"])
    bottom.set_xlim(x0, end)
    bottom.set_xlabel(f"position on {record} (1-based)")
    if shown:
        bottom.legend(fontsize=7, loc="upper right", ncol=len(shown), frameon=False, bbox_to_anchor=(1, 1.35))
    fig.tight_layout()
    save_png(fig, dest)
    plt.close(fig)
