"""Text generation from a causal (left-to-right) language model saved by biofm.

The model is loaded from safetensors only, never with remote code. Generation always starts from the
document-start token (`<|endoftext|>`, which biofm's text tokenizer uses as both end and start of a
document, as GPT-2 does), so the model sees the prompt as the beginning of a document and an empty
prompt works. Sampling runs in a small explicit loop with its own seeded `torch.Generator`: the same
seed gives the same text, and the global random state is untouched. The next token is never a
special token other than end-of-text (which ends the text) nor one of the embedding rows added
beyond the tokenizer's vocabulary.

`generate` returns prompt + continuation for each sequence: the prompt exactly as given, then the
decoded new tokens up to (not including) the first end-of-text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biofm.errors import BiofmError
from biofm.models.device import autocast, current_device, resolve_device
from biofm.models.load import load_config, load_pretrained, load_tokenizer, resolve_model_dir

__all__ = ["generate", "load_causal_lm"]


def _check_causal(config: Any, path: Path) -> None:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    archs = list(getattr(config, "architectures", None) or [])
    model_type = getattr(config, "model_type", "?")
    causal_arch = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    masked_arch = next((a for a in archs if a.endswith("ForMaskedLM")), None)
    if masked_arch is None and not causal_arch and model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES \
            and not getattr(config, "is_decoder", False):
        masked_arch = model_type
    if masked_arch is not None:
        raise BiofmError(
            f"{path}: {masked_arch} is a masked language model; generate needs a causal (left-to-right) model "
            "such as a gpt2-* or llama-* preset (for a masked model use `biofm fill-mask`)"
        )
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise BiofmError(f"{path}: model type {model_type!r} is not a causal language model; generate cannot use it")


def load_causal_lm(path: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) from RUN/model or a run folder, through biofm's one loader (checked folder,
    safetensors only, strict weights, no remote code), refused early when the model is not causal."""
    model_dir = resolve_model_dir(path)
    _check_causal(load_config(model_dir), model_dir)
    model = load_pretrained(model_dir)
    model.eval()
    return model, load_tokenizer(model_dir)


def _context(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def generate(
    model_dir: str | Path,
    prompt: str,
    *,
    max_new_tokens: int = 50,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 1.0,
    seed: int = 0,
    num_return_sequences: int = 1,
    device: str | None = None,
    model: Any = None,
    tokenizer: Any = None,
) -> list[str]:
    """Continue `prompt`; returns `num_return_sequences` texts, each prompt + continuation.

    temperature 0 is greedy decoding (deterministic, one text); otherwise tokens are sampled at
    that temperature from the `top_k` most likely (0 = no limit) within nucleus `top_p`. The same
    `seed` gives the same texts. A loaded `model` and `tokenizer` may be passed to skip loading. `device`
    (a `--device` value) defaults to the current one (biofm.models.device); sampling draws on the CPU, so
    a seed gives the same texts on every device up to the model's arithmetic.
    """
    import torch

    if max_new_tokens < 0:
        raise BiofmError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise BiofmError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise BiofmError(f"top_k must be >= 0 (0 = no limit), got {top_k}")
    if not 0 < top_p <= 1:
        raise BiofmError(f"top_p must be in (0, 1], got {top_p}")
    if num_return_sequences < 1:
        raise BiofmError(f"num_return_sequences must be >= 1, got {num_return_sequences}")
    if temperature == 0 and num_return_sequences > 1:
        raise BiofmError("greedy decoding (temperature 0) gives a single text; set temperature > 0 for several")
    if model is None or tokenizer is None:
        model, tokenizer = load_causal_lm(model_dir)
    else:
        _check_causal(model.config, Path(str(model_dir)))

    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise BiofmError(f"{model_dir}: the tokenizer has no end-of-text/start token to begin a document with")
    eos = tokenizer.eos_token_id
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    ids = [int(start), *prompt_ids]
    limit = _context(model.config)
    if limit is not None and len(ids) + max_new_tokens > limit:
        raise BiofmError(
            f"prompt ({len(prompt_ids)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's context "
            f"of {limit - 1} tokens after the start token; shorten the prompt or lower max_new_tokens"
        )

    head = model.get_output_embeddings()
    n_vocab = int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)
    banned = torch.zeros(n_vocab, dtype=torch.bool)
    banned[len(tokenizer):] = True  # padding rows of the embedding: never trained, never emitted
    for i in tokenizer.all_special_ids:
        if i != eos and 0 <= i < n_vocab:
            banned[i] = True

    dev = resolve_device(device) if device is not None else current_device()
    model = model.to(dev)
    gen = torch.Generator().manual_seed(int(seed))
    input_ids = torch.tensor([ids] * num_return_sequences, dtype=torch.long, device=dev)
    out_ids = torch.empty((num_return_sequences, 0), dtype=torch.long)
    done = torch.zeros(num_return_sequences, dtype=torch.bool)
    past = None
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            with autocast(dev):
                step = model(input_ids=input_ids, past_key_values=past, use_cache=True)
            past = step.past_key_values
            logits = step.logits[:, -1, :n_vocab].float().cpu()
            logits[:, banned] = float("-inf")
            nxt = _pick(logits, temperature, top_k, top_p, gen)
            nxt = torch.where(done, torch.full_like(nxt, eos if eos is not None else 0), nxt)
            out_ids = torch.cat([out_ids, nxt[:, None]], dim=1)
            if eos is not None:
                done |= nxt == eos
                if bool(done.all()):
                    break
            input_ids = nxt[:, None].to(dev)

    texts = []
    for row in out_ids.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        texts.append(prompt + tokenizer.decode(row, skip_special_tokens=True, clean_up_tokenization_spaces=False))
    return texts


def _pick(logits: Any, temperature: float, top_k: int, top_p: float, gen: Any) -> Any:
    """Next token per row: argmax at temperature 0, else a seeded sample after top-k / top-p filtering."""
    import torch

    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens before it already reach top_p (the first one always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=gen)[:, 0]
