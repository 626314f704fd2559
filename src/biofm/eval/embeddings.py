"""Frozen embeddings of every layer, computed once per (model, inputs, settings) and cached.

All layers come from one forward pass (output_hidden_states), pooled by `biofm.models.mlm.pool_layers`
(mean over real tokens, and the <cls> or last token). `cached_layers` is the one cache for every
modality's embeddings (sequences here, cells and peaks in their packages): the key hashes the model's
weight files and config, the tokenizer (sequences), the inputs and the settings, so a changed model,
tokenizer or task misses the cache and a rerun does not recompute.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from biofm.eval.batching import pad_batches
from biofm.io.atomic import atomic_path, write_json
from biofm.io.files import cache_root, file_fingerprint
from biofm.models.device import autocast
from biofm.models.mlm import encoder_of, pool_layers
from biofm.progress import progress

# padded tokens per embedding batch at most: length-sorted short inputs fill `batch_size` rows, long ones
# get fewer rows, so activations stay bounded (every layer's states are kept for pooling)
EMBED_BATCH_TOKENS = 16384


def weights_fingerprint(model_dir: Path) -> str:
    """Size/mtime/content stamp of a model folder's weight files and its config.json."""
    files = [*sorted(Path(model_dir).glob("*.safetensors")), Path(model_dir) / "config.json"]
    return "|".join(file_fingerprint(f) for f in files if f.is_file())


def tokenizer_fingerprint(tok: Any) -> str:
    """A hash of everything that decides a tokenizer's ids: the full serialisation of a fast tokenizer, else
    its class and vocabulary. Published tokenizers may live outside the model folder (../tokenizer, a
    vocab.txt), so the weights' stamp alone would not notice a changed one."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:
        vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else dict(getattr(tok, "vocab", {}))
        text = json.dumps([type(tok).__name__, sorted((str(k), int(v)) for k, v in vocab.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_layers(kind: str, model_dir: Path, key_parts: list[Any], compute: Callable[[], dict[str, np.ndarray]],
                  meta: dict[str, Any], cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """{pooling: [n, layers+1, H]} from the cache `<cache>/KIND-HASH/`, or from `compute()` (then stored
    atomically). The hash covers the model's weights and `key_parts` (str, bytes, arrays or JSON-able)."""
    h = hashlib.sha256(weights_fingerprint(model_dir).encode())
    for part in key_parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    dest = cache_root(cache_dir) / f"{kind}-{h.hexdigest()[:20]}"
    if (dest / "meta.json").exists():
        return {p.stem: np.load(p, mmap_mode="r") for p in dest.glob("*.npy")}
    emb = compute()
    with atomic_path(dest, is_dir=True) as tmp:
        for pooling, arr in emb.items():
            np.save(tmp / f"{pooling}.npy", arr)
        write_json(tmp / "meta.json", {"model": str(model_dir), **meta, "shape": list(emb["mean"].shape)})
    return emb


def _pieces(text: str, tok: PreTrainedTokenizerBase, max_tokens: int, long_mode: str,
            causal: bool = False) -> list[list[int]]:
    """Token ids (with specials) of one input; several windows when it is longer than the context.

    Encoders get their <cls> first; causal models the end-of-text token that starts every document
    in their training blocks."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    body = max_tokens - 1  # room for <cls>
    start = tok.eos_token_id if causal else tok.cls_token_id
    prefix = [start] if start is not None else []
    if len(ids) <= body or long_mode == "truncate":
        return [prefix + ids[:body]]
    return [prefix + ids[i:i + body] for i in range(0, len(ids), body)]  # non-overlapping windows


@torch.inference_mode()
def layer_embeddings_all(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, inputs: list[str], *, max_tokens: int,
    long_mode: str = "truncate", batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """{"mean": [n, layers+1, H], "cls" (encoders) or "last" (causal models): [n, layers+1, H]} as float32;
    windows of long inputs are averaged. A causal model's first position has seen only the start token,
    so its summary vector is the last token's, as GPT-2's sequence classifier uses."""
    encoder = encoder_of(model)
    causal = model.config.model_type in ("gpt2", "llama")
    pieces: list[list[int]] = []
    owner: list[int] = []
    for i, text in enumerate(inputs):
        for p in _pieces(text, tok, max_tokens, long_mode, causal):
            pieces.append(p)
            owner.append(i)
    order = np.argsort([len(p) for p in pieces], kind="stable")  # length-sorted batches: little padding
    n_layers = model.config.num_hidden_layers + 1
    hidden = model.config.hidden_size
    mean = np.zeros((len(inputs), n_layers, hidden), dtype=np.float64)
    cls = np.zeros_like(mean)
    counts = np.zeros(len(inputs))
    pad = tok.pad_token_id
    device = next(model.parameters()).device
    with progress(f"embedding {len(inputs):,} inputs", len(pieces), "windows") as advance:
        for idx, ids, mask in pad_batches(pieces, order, pad, batch_size, device, max_tokens=EMBED_BATCH_TOKENS):
            with autocast(device):
                out = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            pooled, first = (t.cpu().numpy() for t in pool_layers(out.hidden_states, mask, last=causal))  # [B, L+1, H]
            for row, i in enumerate(idx):
                o = owner[i]
                mean[o] += pooled[row]
                cls[o] += first[row]
                counts[o] += 1
            advance(len(idx))
    mean /= counts[:, None, None]
    cls /= counts[:, None, None]
    return {"mean": mean.astype(np.float32), ("last" if causal else "cls"): cls.astype(np.float32)}


def cached_embeddings(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, model_dir: Path, inputs: list[str], *,
    max_tokens: int, long_mode: str = "truncate", batch_size: int = 64, cache_dir: str | None = None,
) -> dict[str, np.ndarray]:
    def compute() -> dict[str, np.ndarray]:
        return layer_embeddings_all(model, tok, inputs, max_tokens=max_tokens, long_mode=long_mode,
                                    batch_size=batch_size)

    text = "\0".join(inputs).encode()
    return cached_layers("emb", model_dir, [max_tokens, long_mode, tokenizer_fingerprint(tok), text], compute,
                         {"n": len(inputs)}, cache_dir)
