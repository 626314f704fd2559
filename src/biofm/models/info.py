"""`biofm info`: the layers of a model with their shapes and parameter counts."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from transformers import PreTrainedModel

from biofm.errors import BiofmError
from biofm.models.presets import PRESETS, build_config, build_model


def model_for_info(name_or_path: str, vocab: int | None = None) -> tuple[PreTrainedModel, str]:
    """A preset (built on the meta device, sized for `vocab` tokens or its usual tokenizer's) or a saved model."""
    if name_or_path in PRESETS and not Path(name_or_path).exists():
        n = vocab or PRESETS[name_or_path].vocab
        cfg = build_config(name_or_path, vocab_size=n, pad_id=1, mask_id=2, cls_id=3, eos_id=4)
        with torch.device("meta"):  # shapes only, no memory
            return build_model(cfg), f"preset {name_or_path} (a {n:,}-token vocabulary; --vocab N for another)"
    if not Path(name_or_path).exists():
        raise BiofmError(f"{name_or_path}: neither a model folder nor a preset (presets: {', '.join(PRESETS)})")
    from biofm.models.load import load_pretrained

    # Any saved model, masked or causal; its folder is checked (config.json, complete safetensors weights
    # matching the config) and every fault is a one-line BiofmError naming the file. No tokenizer needed.
    return load_pretrained(name_or_path), str(name_or_path)


def print_info(name_or_path: str, console: Console | None = None, vocab: int | None = None) -> int:
    console = console or Console()
    model, title = model_for_info(name_or_path, vocab)
    table = Table(title=f"{title}: {type(model).__name__}")
    for col, justify in [("parameter", "left"), ("shape", "left"), ("count", "right")]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    total = 0
    for name, p in model.named_parameters():
        total += p.numel()
        table.add_row(name, "×".join(map(str, p.shape)), f"{p.numel():,}")
    console.print(table)
    cfg = model.config
    ffn = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None)  # GPT-2 calls it n_inner
    console.print(f"layers {cfg.num_hidden_layers}, hidden {cfg.hidden_size}, heads {cfg.num_attention_heads}, "
                  f"ffn {ffn}, vocab {cfg.vocab_size}")
    console.print(f"total parameters: {total:,} ({total / 1e6:.1f}M)")
    return total
