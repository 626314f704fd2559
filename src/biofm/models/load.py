"""Loading saved models safely: safetensors only, never remote code.

Every fault in a model folder the user points at (a missing, empty, truncated or corrupt
`model.safetensors`, a missing or invalid `config.json`, pickled `pytorch_model.bin` weights only,
tensors that do not match the config) is a `BiofmError` whose one line names the file and what is
wrong. The cheap checks (config keys, the safetensors header against the file size) run before
transformers is asked to load anything; what transformers or safetensors still raise is turned
into the same kind of message. Weights load strictly: a biofm checkpoint whose tensors do not match
its config (missing, unexpected or mis-shaped tensors) is refused instead of being silently
re-initialised.

Published checkpoints (Nucleotide Transformer v1, DNABERT, Geneformer, BERT/RoBERTa, GPT-2) load
through the same checks, as their authors publish them (`biofm.models.published`): a Hub id resolves
from the local Hugging Face cache, a config that needs the repository's code is refused, the modality
is inferred (or given), and the tokenizer is the published one, built by the modality that claims the
layout. Their weights may lack tensors biofm does not use (a pretraining head they never published is
fresh), but never the encoder's, and never the masked-LM head where predictions are asked for.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)

from biofm.errors import BiofmError
from biofm.models.device import current_device

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
HINT = "re-save the model, or point at a complete checkpoint under RUN/checkpoints/step-N/model"
# Pickled weight files: loading them can run arbitrary code, so biofm never does.
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.bin", "model.pt", "model.pth")
_SHOW_KEYS = 3  # tensor names quoted in a mismatch message


def _config_errors() -> tuple[type[BaseException], ...]:
    """What building a config from a bad config.json raises (huggingface_hub's strict dataclasses too)."""
    errors: list[type[BaseException]] = [OSError, ValueError, TypeError, KeyError, AttributeError]
    try:
        from huggingface_hub.errors import StrictDataclassError

        errors.append(StrictDataclassError)
    except ImportError:  # older huggingface_hub: no strict dataclasses
        pass
    return tuple(errors)


def _load_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ValueError, KeyError, json.JSONDecodeError, UnicodeDecodeError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:
        pass
    return tuple(errors)


def _one_line(exc: BaseException, limit: int = 240) -> str:
    """An exception's message on one line, shortened (library messages span many lines)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _names(keys: Any) -> str:
    keys = sorted(str(k) for k in keys)
    shown = ", ".join(keys[:_SHOW_KEYS])
    return shown + (f" (+{len(keys) - _SHOW_KEYS} more)" if len(keys) > _SHOW_KEYS else "")


# ---------------------------------------------------------------------------------------- checks


def check_safetensors(file: str | Path) -> None:
    """BiofmError unless `file` is a complete safetensors file, judged from its header alone.

    Layout: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor to its
    `data_offsets` [begin, end) in the data that follows; so the file is exactly 8 + N + the largest
    end offset bytes long. A file cut short (an interrupted copy or save) fails that equation.
    """
    file = Path(file)
    try:
        size = file.stat().st_size
        with file.open("rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            header = fh.read(n) if len(head) == 8 and 0 < n <= size - 8 else b""
    except OSError as exc:
        raise BiofmError(f"{file}: cannot read ({exc.strerror or exc}); {HINT}") from exc
    if size == 0:
        raise BiofmError(f"{file}: empty file (0 bytes); {HINT}")
    if size < 8:
        raise BiofmError(f"{file}: truncated ({size} bytes, not even the 8-byte header length); {HINT}")
    if n == 0 or n > size - 8:
        raise BiofmError(f"{file}: not a safetensors file or truncated (its first 8 bytes give a header of "
                         f"{n:,} bytes, the file has {size - 8:,} after them); {HINT}")
    try:
        meta = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BiofmError(f"{file}: corrupt header (not JSON: {_one_line(exc)}); {HINT}") from exc
    if not isinstance(meta, dict):
        raise BiofmError(f"{file}: corrupt header (a JSON {type(meta).__name__}, not an object); {HINT}")
    end = 0
    for name, entry in meta.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                or offsets[0] > offsets[1]):
            raise BiofmError(f"{file}: corrupt header (tensor {name!r} has no valid data_offsets); {HINT}")
        end = max(end, offsets[1])
    expected = 8 + n + end
    if size < expected:
        raise BiofmError(f"{file}: truncated ({size:,} bytes, its header describes {expected:,}; "
                         f"{size / expected:.0%} present); {HINT}")
    if size > expected:
        raise BiofmError(f"{file}: corrupt ({size - expected:,} bytes after the last tensor its header "
                         f"describes); {HINT}")


def _check_config(path: Path) -> dict[str, Any]:
    """The parsed config.json of model folder `path`; BiofmError naming it when missing or invalid."""
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise BiofmError(f"{cfg_path}: missing, so {path} is not a model folder; {HINT}")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BiofmError(f"{cfg_path}: cannot read ({exc.strerror or exc}); {HINT}") from exc
    except UnicodeDecodeError as exc:
        raise BiofmError(f"{cfg_path}: not a text file ({_one_line(exc)}); {HINT}") from exc
    except json.JSONDecodeError as exc:
        raise BiofmError(f"{cfg_path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         f"{HINT}") from exc
    if not isinstance(cfg, dict):
        raise BiofmError(f"{cfg_path}: a JSON {type(cfg).__name__}, not an object of model settings; {HINT}")
    model_type = cfg.get("model_type")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    from biofm.models.presets import ARCHS
    from biofm.models.published import remote_code_refusal

    refusal = remote_code_refusal(cfg, isinstance(model_type, str) and model_type in CONFIG_MAPPING_NAMES)
    if refusal:
        raise BiofmError(f"{cfg_path}: {refusal}")
    if not model_type:
        archs = cfg.get("architectures") or []
        known = {name.lower() for name in CONFIG_MAPPING_NAMES}
        # BertForMaskedLM -> bert, GPT2LMHeadModel -> gpt2
        stems = [a.lower().split("for")[0].removesuffix("model").removesuffix("lmhead") for a in archs
                 if isinstance(a, str)]
        guess = next((t for t in stems if t in known), None)
        if guess:  # e.g. DNABERT's configs, written by an old transformers, name BertForMaskedLM but no model_type
            raise BiofmError(f"{cfg_path}: no 'model_type' key; its architectures ({', '.join(archs)}) say "
                             f"\"model_type\": \"{guess}\": add that line to config.json")
        raise BiofmError(f"{cfg_path}: no 'model_type' key, so the architecture is unknown; {HINT}")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING_NAMES:
        raise BiofmError(f"{cfg_path}: unknown model_type {model_type!r} (biofm models are one of "
                         f"{', '.join(ARCHS)}); {HINT}")
    return cfg


def _check_weights(path: Path) -> None:
    """BiofmError naming the weight file unless `path` holds complete safetensors weights."""
    single = path / WEIGHTS_FILE
    if single.exists():
        check_safetensors(single)
        return
    index = path / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise BiofmError(f"{index}: not a valid shard index (need a 'weight_map' object: "
                             f"{_one_line(exc)}); {HINT}") from exc
        if not shards or not all(isinstance(s, str) and Path(s).name == s for s in shards):
            raise BiofmError(f"{index}: not a valid shard index (no shard file names in 'weight_map'); {HINT}")
        for shard in shards:
            if not (path / shard).exists():
                raise BiofmError(f"{path / shard}: missing (listed in {INDEX_FILE}); {HINT}")
            check_safetensors(path / shard)
        return
    if list(path.glob("model-*.safetensors")):
        raise BiofmError(f"{index}: missing; the shards model-*.safetensors cannot be put together without it; "
                         f"{HINT}")
    for name in PICKLE_WEIGHTS:
        if (path / name).exists():
            raise BiofmError(f"{path / name}: refused; biofm loads weights from safetensors only and never unpickles "
                             f"(a pickle can run code). Convert it to {WEIGHTS_FILE} in a trusted session "
                             f"(save_pretrained(..., safe_serialization=True)), or {HINT}")
    raise BiofmError(f"{single}: missing (the folder has no {WEIGHTS_FILE}; biofm loads weights from safetensors "
                     f"only); {HINT}")


def _weights_name(path: Path) -> Path:
    """The file to name when loading the weights of `path` fails."""
    return path / WEIGHTS_FILE if (path / WEIGHTS_FILE).exists() or not (path / INDEX_FILE).exists() \
        else path / INDEX_FILE


def resolve_model_dir(path: str | Path) -> Path:
    """Accept RUN/model, a run folder (uses RUN/model), any model folder, or a Hugging Face Hub id
    (`org/name`) cached locally; the folder's config.json and weights are checked.

    The checks are cheap (config keys; the safetensors header against the file size): a missing,
    truncated or corrupt file is reported by name here, before transformers sees it.
    """
    path = Path(path)
    if not path.exists():
        from biofm.models.published import is_hub_id, resolve_hub_id

        if not is_hub_id(str(path)):
            raise BiofmError(f"{path}: model folder not found")
        path = resolve_hub_id(str(path))  # a folder that does not exist may name a cached Hub model
    if not path.is_dir():
        raise BiofmError(f"{path}: a file, not a model folder; give the folder holding config.json and "
                         f"{WEIGHTS_FILE} (RUN/model) or a run folder")
    if not (path / CONFIG_FILE).exists() and (path / "model").is_dir():
        path = path / "model"  # a run folder
    _check_config(path)
    _check_weights(path)
    return path


# ---------------------------------------------------------------------------------------- loading


def load_config(path: Path) -> PretrainedConfig:
    """AutoConfig of a checked folder (resolve_model_dir); what transformers still rejects becomes a
    BiofmError naming config.json."""
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except _config_errors() as exc:
        raise BiofmError(f"{path / CONFIG_FILE}: invalid model config ({_one_line(exc)}); {HINT}") from exc


def is_biofm_checkpoint(config: PretrainedConfig) -> bool:
    """Written by biofm (its configs carry biofm_preset / biofm_modality): its tensors must match exactly."""
    return bool(getattr(config, "biofm_preset", None) or getattr(config, "biofm_modality", None))


@contextmanager
def quiet_transformers():
    """No transformers warnings or "Loading weights" bars while loading (e.g. its multi-line LOAD REPORT):
    biofm reports problems itself, and from Python (a notebook) as quietly as from the CLI."""
    from transformers.utils import logging as hf_logging

    before, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def _tied_keys(model: PreTrainedModel) -> set[str]:
    """Names of parameters tied to another (e.g. a decoder sharing the input embedding): never saved."""
    out: set[str] = set()
    for attr in ("all_tied_weights_keys", "_tied_weights_keys"):
        value = getattr(model, attr, None)
        if isinstance(value, dict | list | tuple | set):  # a dict maps each tied name to its source
            out.update(str(k) for k in value)
    return out


def _from_pretrained(auto: Any, path: Path, config: PretrainedConfig, kind: str, need_head: bool = False,
                     **kwargs: Any) -> PreTrainedModel:
    """`auto.from_pretrained` of a checked folder, strictly: BiofmError naming the file on any fault; the
    model is placed on the current device (`biofm.models.device.on_device`).

    A published checkpoint may lack tensors outside the encoder (a head it never published is fresh), but
    a missing encoder tensor would silently leave that part random, so it is refused; with `need_head`
    (predictions are asked for) a missing head is refused too."""
    cfg_path = path / CONFIG_FILE
    if type(config) not in auto._model_mapping:
        raise BiofmError(f"{cfg_path}: model_type {config.model_type!r} has no {kind} form in transformers; "
                         f"biofm cannot use it here")
    weights = _weights_name(path)
    try:
        with quiet_transformers():
            # Mis-shaped tensors are reported in the loading info (and refused below) rather than raised
            # as transformers' RuntimeError that only points at a report.
            model, info = auto.from_pretrained(path, config=config, use_safetensors=True, trust_remote_code=False,
                                               output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    except _load_errors() as exc:
        raise BiofmError(f"{weights}: cannot be loaded ({_one_line(exc)}); {HINT}") from exc
    except RuntimeError as exc:
        # transformers raises plain RuntimeErrors for state-dict errors; anything else is not the user's fault
        if "loading state_dict" not in str(exc) and "conversion" not in str(exc):
            raise
        raise BiofmError(f"{weights}: cannot be loaded ({_one_line(exc)}); {HINT}") from exc
    problems = []
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        shown = [f"{k} {tuple(a)} vs {tuple(b)}" if isinstance(k, str) else str(k)
                 for k, a, b in (m if isinstance(m, tuple) and len(m) == 3 else (m, (), ()) for m in mismatched)]
        problems.append(f"tensor shapes differ (checkpoint vs config): {_names(shown)}")
    missing = set(info.get("missing_keys") or ()) - _tied_keys(model)
    if is_biofm_checkpoint(config):
        unexpected = set(info.get("unexpected_keys") or ())
        if missing:
            problems.append(f"missing tensors {_names(missing)}")
        if unexpected:
            problems.append(f"unexpected tensors {_names(unexpected)}")
    else:
        prefix = f"{getattr(model, 'base_model_prefix', '')}."
        body = {k for k in missing if k.startswith(prefix)}
        if body:
            problems.append(f"missing encoder tensors {_names(body)} (they would be random)")
        elif need_head and missing:
            problems.append(f"missing {kind} head tensors {_names(missing)} (its predictions would be random)")
    if info.get("error_msgs"):
        problems.append(_one_line(Exception(info["error_msgs"][0])))
    if problems:
        raise BiofmError(f"{weights}: does not match {cfg_path.name} ({config.model_type}): "
                         f"{'; '.join(problems)}; {HINT}")
    return model.to(current_device())  # the CPU unless inside `on_device` (biofm.models.device)


def load_tokenizer(path: Path, modality: str | None = None, allow_pickle: bool = False) -> Any:
    """The model's tokenizer: the one its modality builds for a published layout it claims (verb
    `published_tokenizer`: NT-v1's k-mer EsmTokenizer, DNABERT's overlapping k-mers, Geneformer's gene
    dictionaries, which are pickles read only with `allow_pickle`), else biofm's tokenizer.json (beside the
    model or in ../tokenizer), else the published text tokenizer files (vocab.txt, vocab.json + merges.txt)
    read by AutoTokenizer without remote code."""
    cfg = _check_config(path)
    from biofm.modality import get as get_modality
    from biofm.models.published import TEXT_TOKENIZER_FILES, infer_modality

    m = get_modality(infer_modality(path, cfg, modality))
    if "published_tokenizer" in m.verbs:
        tok = m.verb("published_tokenizer")(path, cfg, allow_pickle=allow_pickle)
        if tok is not None:
            return tok
    tok_dir = path if (path / "tokenizer.json").exists() else path.parent / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        tok_dir = path
        if not any((path / f).is_file() for f in TEXT_TOKENIZER_FILES):
            raise BiofmError(f"{path}: no tokenizer files beside the model (tokenizer.json here or in ../tokenizer, "
                             f"or a published vocab.txt / vocab.json + merges.txt)")
    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=False)
    except Exception as exc:  # the tokenizers library raises bare Exceptions for a corrupt tokenizer.json
        name = "tokenizer.json" if (tok_dir / "tokenizer.json").exists() else "tokenizer files"
        raise BiofmError(f"{tok_dir / name}: cannot be loaded ({_one_line(exc)}); {HINT}") from exc
    if tok.pad_token is None and tok.eos_token is not None:
        # GPT-2 publishes no padding token: batches pad with <|endoftext|> under the attention mask (which
        # must then come from the lengths: <|endoftext|> also starts every causal input)
        tok.pad_token = tok.eos_token
    return tok


def model_modality(path: str | Path, modality: str | None = None) -> str:
    """The modality a model is read as, without loading it: `modality` when given (`--modality`; it may not
    contradict a biofm checkpoint's own), else config.json's biofm_modality, else the modality that
    recognises a published layout (NT-v1 / DNABERT: dna, Geneformer: cells), else text for a model with a
    text tokenizer, else dna (biofm models that predate biofm_modality)."""
    from biofm.models.published import infer_modality

    folder = resolve_model_dir(path)
    return infer_modality(folder, _check_config(folder), modality)


def load_masked_lm(path: str | Path, modality: str | None = None, allow_pickle: bool = False
                   ) -> tuple[PreTrainedModel, Any]:
    """A masked LM with its masked-LM head (fill-mask, variant scores) and its tokenizer, in eval mode."""
    path = resolve_model_dir(path)
    config = load_config(path)
    from biofm.models.presets import CAUSAL_ARCHS

    if config.model_type in CAUSAL_ARCHS:
        raise BiofmError(f"{path}: a causal ({config.model_type}) model has no masked-LM head; use `biofm generate`")
    model = _from_pretrained(AutoModelForMaskedLM, path, config, "masked-LM", need_head=True)
    model.eval()
    return model, load_tokenizer(path, modality, allow_pickle)


def load_for_embedding(path: str | Path, attn_implementation: str = "sdpa", modality: str | None = None,
                       allow_pickle: bool = False) -> tuple[PreTrainedModel, Any]:
    """A masked or causal LM with its tokenizer, in eval mode (embeddings, probes, fine-tuning).
    `attn_implementation="eager"` when attention weights are wanted (`biofm analyze`): SDPA computes none."""
    path = resolve_model_dir(path)
    model = load_pretrained(path, attn_implementation)
    model.eval()
    return model, load_tokenizer(path, modality, allow_pickle)


def load_pretrained(path: str | Path, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """The model of a folder with its own head (masked or causal LM), for continued pretraining."""
    path = resolve_model_dir(path)
    from biofm.models.presets import CAUSAL_ARCHS

    config = load_config(path)
    causal = config.model_type in CAUSAL_ARCHS
    auto = AutoModelForCausalLM if causal else AutoModelForMaskedLM
    return _from_pretrained(auto, path, config, "causal-LM" if causal else "masked-LM",
                            attn_implementation=attn_implementation)
