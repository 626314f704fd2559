"""Model presets, built on stock transformers architectures so checkpoints load without biofm.

A preset is a shape (layers, width, heads, FFN, context) and a default architecture; `arch` can
be overridden, so the same shape serves every modality. NT-v2 (rotary positions, gated FFN, no
biases, 2048-token context) maps onto ModernBERT with every layer global attention and a SwiGLU
feed-forward; NT-v1 (learned positions, plain FFN with biases) maps onto ESM, which is what NT-v1
itself is. Text uses GPT-2, a Llama-style decoder (rotary, SwiGLU, RMSNorm) or BERT; cells use BERT,
whose token-type embedding carries the expression value. `published_params` is the size the
original authors report, which tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    BertConfig,
    EsmConfig,
    GPT2Config,
    LlamaConfig,
    ModernBertConfig,
    PretrainedConfig,
    PreTrainedModel,
)

from biofm.errors import BiofmError

ARCHS = ("modernbert", "esm", "bert", "gpt2", "llama")
CAUSAL_ARCHS = ("gpt2", "llama")
VOCAB_MULTIPLE = 64  # embedding rows padded to a multiple of 64: faster matmuls on GPU, harmless on CPU


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str  # default architecture, one of ARCHS
    layers: int
    hidden: int
    heads: int
    ffn: int
    max_len: int
    published_params: float | None = None  # as reported by the original authors
    note: str = ""
    vocab: int = 4106  # the vocabulary `biofm info` sizes it with: its usual tokenizer's (6-mer DNA: 4,106)
    extra: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("tiny", "modernbert", layers=2, hidden=128, heads=4, ffn=256, max_len=512,
               note="for CPU demos and tests"),
        Preset("small", "modernbert", layers=4, hidden=256, heads=8, ffn=1024, max_len=1024,
               note="4-layer, hidden 256 encoder for quick CPU experiments"),
        Preset("50m", "modernbert", layers=12, hidden=512, heads=16, ffn=2048, max_len=2048,
               published_params=55.9e6, note="NT-v2 50M shape"),
        Preset("100m", "modernbert", layers=22, hidden=512, heads=16, ffn=2048, max_len=2048,
               published_params=97.9e6, note="NT-v2 100M shape"),
        Preset("500m", "modernbert", layers=29, hidden=1024, heads=16, ffn=4096, max_len=2048,
               published_params=498e6, note="NT-v2 500M shape"),
        Preset("nt-v1-500m", "esm", layers=24, hidden=1280, heads=20, ffn=5120, max_len=1000,
               published_params=500e6, note="NT-v1 500M shape (learned positions)"),
        Preset("gpt2-tiny", "gpt2", layers=2, hidden=128, heads=4, ffn=512, max_len=256,
               vocab=4096, note="text: for CPU demos and tests"),
        Preset("gpt2-mini", "gpt2", layers=4, hidden=256, heads=8, ffn=1024, max_len=512,
               vocab=4096, note="text: quick CPU experiments"),
        Preset("gpt2-small", "gpt2", layers=12, hidden=768, heads=12, ffn=3072, max_len=1024,
               published_params=124.4e6, vocab=50257,
               note="GPT-2 small shape (124M with GPT-2's 50,257-token vocabulary)"),
        Preset("llama-tiny", "llama", layers=2, hidden=128, heads=4, ffn=344, max_len=256,
               vocab=4096, note="text: Llama-style (rotary, SwiGLU, RMSNorm) for CPU demos"),
        Preset("llama-small", "llama", layers=12, hidden=768, heads=12, ffn=2048, max_len=1024,
               vocab=32000, note="text: Llama-style decoder of GPT-2-small size"),
        Preset("bert-tiny", "bert", layers=2, hidden=128, heads=4, ffn=512, max_len=256,
               vocab=4096, note="text/cells: BERT-style masked LM for CPU demos"),
        Preset("bert-base", "bert", layers=12, hidden=768, heads=12, ffn=3072, max_len=512,
               published_params=110e6, vocab=30522,
               note="BERT-base shape (110M with BERT's 30,522-token vocabulary)"),
    ]
}


def padded_vocab(n: int, multiple: int = VOCAB_MULTIPLE) -> int:
    return ((n + multiple - 1) // multiple) * multiple


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise BiofmError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def build_config(
    preset: str | Preset,
    *,
    vocab_size: int,
    pad_id: int,
    mask_id: int,
    cls_id: int,
    eos_id: int,
    max_len: int | None = None,
    overrides: dict[str, Any] | None = None,
    arch: str | None = None,
    type_vocab_size: int = 2,
) -> PretrainedConfig:
    """A transformers config for `preset` sized for a tokenizer with `vocab_size` tokens."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    arch = arch or p.arch
    if arch not in ARCHS:
        raise BiofmError(f"model.arch={arch!r}: choose one of {', '.join(ARCHS)}")
    vocab = padded_vocab(vocab_size)
    max_len = max_len or p.max_len
    if arch == "modernbert":
        cfg: PretrainedConfig = ModernBertConfig(
            vocab_size=vocab,
            hidden_size=p.hidden,
            intermediate_size=p.ffn,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            hidden_activation="silu",  # SwiGLU, as NT-v2
            max_position_embeddings=max_len,
            layer_types=["full_attention"] * p.layers,
            attention_bias=False,
            mlp_bias=False,
            norm_bias=False,
            decoder_bias=True,
            classifier_bias=False,
            tie_word_embeddings=False,  # NT-v2 keeps input and output embeddings separate
            embedding_dropout=0.0,
            attention_dropout=0.0,
            mlp_dropout=0.0,
            pad_token_id=pad_id,
            cls_token_id=cls_id,
            bos_token_id=cls_id,
            eos_token_id=eos_id,
            sep_token_id=eos_id,
            classifier_pooling="mean",
        )
    elif arch == "esm":
        cfg = EsmConfig(
            vocab_size=vocab,
            hidden_size=p.hidden,
            intermediate_size=p.ffn,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            max_position_embeddings=max_len + 2,
            position_embedding_type="absolute",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            emb_layer_norm_before=False,
            token_dropout=False,
            tie_word_embeddings=False,
            pad_token_id=pad_id,
            mask_token_id=mask_id,
            layer_norm_eps=1e-12,
        )
    elif arch == "bert":
        cfg = BertConfig(
            vocab_size=vocab,
            hidden_size=p.hidden,
            intermediate_size=p.ffn,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            max_position_embeddings=max_len,
            type_vocab_size=type_vocab_size,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            pad_token_id=pad_id,
            bos_token_id=cls_id,
            eos_token_id=eos_id,
            tie_word_embeddings=True,
        )
    elif arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab,
            n_embd=p.hidden,
            n_inner=p.ffn,
            n_layer=p.layers,
            n_head=p.heads,
            n_positions=max_len,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=eos_id,  # GPT-2 uses <|endoftext|> for both
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            tie_word_embeddings=True,
        )
    else:  # llama
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=p.hidden,
            intermediate_size=p.ffn,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            num_key_value_heads=p.heads,
            max_position_embeddings=max_len,
            rms_norm_eps=1e-5,
            attention_bias=False,
            mlp_bias=False,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            tie_word_embeddings=False,
        )
    for key, value in (overrides or {}).items():
        if not hasattr(cfg, key):
            raise BiofmError(f"model.overrides: {type(cfg).__name__} has no setting {key!r}")
        setattr(cfg, key, value)
    cfg.biofm_preset = p.name
    return cfg


def is_causal(config: PretrainedConfig) -> bool:
    return config.model_type in CAUSAL_ARCHS


def build_model(config: PretrainedConfig, seed: int = 0) -> PreTrainedModel:
    import torch

    torch.manual_seed(seed)
    auto = AutoModelForCausalLM if is_causal(config) else AutoModelForMaskedLM
    return auto.from_config(config, attn_implementation="sdpa")


def count_params(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())
