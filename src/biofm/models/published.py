"""Published checkpoints, loaded as their authors publish them: Hub ids, remote-code refusals, modality.

`biofm.models.load` is the one loader; this module holds what it needs to read a folder that another
project published rather than biofm wrote:

- a Hugging Face Hub id (`org/name`, optionally `org/name/subfolder` and `@revision`) resolves to its
  snapshot folder in the local cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
  `~/.cache/huggingface/hub`); nothing is ever downloaded, so an id that is not cached is one line
  saying so;
- a config that needs code from the model's repository (`auto_map`, or a model type transformers
  does not implement) is refused in one line naming the family (Nucleotide Transformer v2,
  DNABERT-2, HyenaDNA, Caduceus) and why: biofm never sets `trust_remote_code`;
- the modality of a folder: biofm's own key, else the modality plug-in that recognises the layout
  (verb `published_family`: DNA claims Nucleotide Transformer v1 and DNABERT, cells claims
  Geneformer), else a text model when it has a text tokenizer; `--modality` overrides all but a
  biofm checkpoint's own key. The modality also builds the tokenizer of the layouts it claims (verb
  `published_tokenizer`), so the k-mer and gene-dictionary rules live in the modality packages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from biofm.errors import BiofmError

CONFIG_FILE = "config.json"
# org/name[/subfolder...][@revision]; Hub names are letters, digits, '-', '_' and '.'
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?P<sub>(?:/[\w.-]+)*)(?:@(?P<rev>[\w.-]+))?$")
# files whose presence makes a folder's tokenizer a text tokenizer that AutoTokenizer reads
TEXT_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")

# Families whose code lives in their repository: (name, test on the config, why transformers' own classes cannot
# stand in). The test sees the config dict, its lower-cased text and the auto_map's module names.
_REMOTE_FAMILIES: tuple[tuple[str, Any, str], ...] = (
    ("HyenaDNA", lambda cfg, text, mods: "hyena" in text,
     "its Hyena long-convolution operator (not attention) is defined in the repository's modeling_hyena.py"),
    ("Caduceus", lambda cfg, text, mods: "caduceus" in text,
     "its bidirectional, reverse-complement-equivariant Mamba blocks are defined in the repository's "
     "modeling_caduceus.py and need mamba-ssm"),
    ("DNABERT-2", lambda cfg, text, mods: "bert_layers" in mods or "alibi_starting_size" in cfg
     or "dnabert-2" in text or "dnabert2" in text,
     "its ALiBi attention (with Triton flash attention) is defined in the repository's bert_layers.py; "
     "transformers' BertForMaskedLM would drop the ALiBi biases"),
    ("Nucleotide Transformer v2", lambda cfg, text, mods: cfg.get("model_type") == "esm"
     or "nucleotide-transformer-v2" in text,
     "its ESM variant (rotary positions, gated feed-forward layers without biases) is defined in the "
     "repository's modeling_esm.py; transformers' EsmForMaskedLM would load its weights into the wrong layers"),
)


def _refusal(family: str, why: str) -> str:
    return (f"refused: {family} needs code from its model repository ({why}), and biofm never runs a "
            f"repository's code (trust_remote_code). biofm loads Nucleotide Transformer v1, DNABERT, Geneformer, "
            f"BERT/RoBERTa and GPT-2 checkpoints, which transformers implements itself")


def remote_code_refusal(cfg: dict[str, Any], known_type: bool) -> str | None:
    """Why a parsed config.json cannot be loaded without remote code (None if it can).

    `known_type`: transformers implements the config's model_type. A config with an `auto_map` asks for
    the repository's classes even when its model_type is a known one (NT-v2 says `esm`, DNABERT-2 `bert`).
    """
    auto_map = cfg.get("auto_map")
    if not auto_map and known_type:
        return None
    refs = auto_map.values() if isinstance(auto_map, dict) else []
    mods = " ".join(str(r if isinstance(r, str) else " ".join(map(str, r))) for r in refs).lower()
    names = " ".join(str(cfg.get(k) or "") for k in ("model_type", "_name_or_path", "name_or_path"))
    text = " ".join([names, " ".join(map(str, cfg.get("architectures") or [])), mods]).lower()
    for family, matches, why in _REMOTE_FAMILIES:
        if (auto_map or family in ("HyenaDNA", "Caduceus")) and matches(cfg, text, mods):
            return _refusal(family, why)
    if auto_map:
        shown = ", ".join(sorted({str(r) for r in refs if isinstance(r, str)}))[:160]
        return _refusal(f"this {cfg.get('model_type') or 'model'} checkpoint",
                        f"its config's auto_map points at {shown or 'the repository'}")
    return None  # an unknown model_type without auto_map: the caller's own message names it


# ---------------------------------------------------------------------------------------- Hub ids


def hub_cache() -> Path:
    """The Hugging Face Hub cache folder, read from the environment at call time (as huggingface_hub does
    at import): HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def is_hub_id(spec: str) -> bool:
    return _HUB_ID.match(str(spec)) is not None


def resolve_hub_id(spec: str) -> Path:
    """The cached snapshot folder (`models--org--name/snapshots/REV[/subfolder]`) of Hub id `spec`.

    The revision is `@rev` when given, else the cache's `main` ref; a cache holding a single snapshot and no
    ref (a download by commit) is used as it is. BiofmError in one line when the model is not cached.
    """
    m = _HUB_ID.match(str(spec))
    if m is None:
        raise BiofmError(f"{spec}: not a Hugging Face model id (org/name)")
    cache = hub_cache()
    sub = m["sub"].strip("/")
    target = f"{sub}/{CONFIG_FILE}" if sub else CONFIG_FILE
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(m["repo"], target, cache_dir=str(cache), revision=m["rev"])
    if isinstance(found, str):
        return Path(found).parent
    snapshots = cache / f"models--{m['repo'].replace('/', '--')}" / "snapshots"
    candidates = sorted(p for p in snapshots.glob("*") if (p / target).is_file()) if snapshots.is_dir() else []
    if m["rev"] is None and len(candidates) == 1:
        return candidates[0] / sub if sub else candidates[0]
    where = f"revision {m['rev']} of " if m["rev"] else ""
    name = f"{m['repo']}/{sub}" if sub else m["repo"]
    raise BiofmError(f"{spec}: no such model folder, and {where}{name} is not in the local Hugging Face cache "
                     f"({cache}); biofm never downloads models: fetch it where the network is allowed "
                     f"(hf download {m['repo']}) and point HF_HUB_CACHE at that cache, or give the model folder")


# ---------------------------------------------------------------------------------------- modality


def published_family(folder: Path, cfg: dict[str, Any]) -> tuple[str, str] | None:
    """(modality, family) of a layout a modality plug-in recognises (verb `published_family`), else None."""
    from biofm.modality import modalities

    for name, m in modalities().items():
        if "published_family" in m.verbs:
            family = m.verb("published_family")(folder, cfg)
            if family:
                return name, str(family)
    return None


def infer_modality(folder: Path, cfg: dict[str, Any], given: str | None = None) -> str:
    """The modality a model folder is read as (see the module docstring)."""
    from biofm.modality import get as get_modality
    from biofm.modality import modalities

    saved = cfg.get("biofm_modality")
    if given is not None:
        get_modality(given)  # an unknown name is one line listing the modalities
        if saved and saved != given:
            raise BiofmError(f"{folder / CONFIG_FILE}: a biofm {saved} model; --modality {given} contradicts it")
        return given
    if saved:
        return str(saved)
    if cfg.get("biofm_preset"):
        return "dna"  # biofm models from before biofm_modality was written were all DNA
    claimed = published_family(folder, cfg)
    if claimed is not None:
        return claimed[0]
    # no modality claims the layout: a text model when it has a text tokenizer (BERT, RoBERTa, GPT-2, ...);
    # an unclaimed ESM model is not text (ESM-2's vocabulary is amino acids)
    if cfg.get("model_type") != "esm" and "text" in modalities() and any(
            (folder / f).is_file() for f in TEXT_TOKENIZER_FILES):
        return "text"
    return "dna"  # models another tool wrote with biofm's tokenizer layout


def context_length(config: Any) -> int:
    """Tokens one input may hold, special tokens included. ESM and RoBERTa number positions from
    pad_token_id + 1 (positions 0..pad are never used), so NT-v1's 1,002 position embeddings hold 1,000
    tokens; other models hold max_position_embeddings (GPT-2: n_positions)."""
    n = int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 512)
    if getattr(config, "model_type", "") in ("esm", "roberta", "xlm-roberta", "camembert") and \
            getattr(config, "position_embedding_type", "absolute") == "absolute":
        pad = getattr(config, "pad_token_id", None)
        n -= (int(pad) + 1) if pad is not None else 0
    return max(1, n)
