"""Loading saved models safely: safetensors only, never remote code."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from biofm.errors import BiofmError


def resolve_model_dir(path: str | Path) -> Path:
    """Accept RUN/model, or a run folder (uses RUN/model)."""
    path = Path(path)
    if not path.exists():
        raise BiofmError(f"{path}: model folder not found")
    if (path / "model" / "config.json").exists():
        path = path / "model"
    if not (path / "config.json").exists():
        raise BiofmError(f"{path}: not a model folder (no config.json)")
    if not (path / "model.safetensors").exists() and not list(path.glob("model-*.safetensors")):
        raise BiofmError(f"{path}: no model.safetensors; biofm loads weights from safetensors only")
    return path


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    tok_dir = path if (path / "tokenizer.json").exists() else path.parent / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        raise BiofmError(f"{path}: no tokenizer files beside the model")
    return AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=False)


def load_masked_lm(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = resolve_model_dir(path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    from biofm.models.presets import CAUSAL_ARCHS

    if config.model_type in CAUSAL_ARCHS:
        raise BiofmError(f"{path}: a causal ({config.model_type}) model has no masked-LM head; use `biofm generate`")
    model = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    model.eval()
    return model, load_tokenizer(path)


def load_for_embedding(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A masked or causal LM with its tokenizer, in eval mode (embeddings, probes, fine-tuning)."""
    path = resolve_model_dir(path)
    model = load_pretrained(path)
    model.eval()
    return model, load_tokenizer(path)


def load_pretrained(path: str | Path) -> PreTrainedModel:
    """The model of a folder with its own head (masked or causal LM), for continued pretraining."""
    path = resolve_model_dir(path)
    from biofm.models.presets import CAUSAL_ARCHS

    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    auto = AutoModelForCausalLM if config.model_type in CAUSAL_ARCHS else AutoModelForMaskedLM
    return auto.from_pretrained(path, use_safetensors=True, trust_remote_code=False, attn_implementation="sdpa")
