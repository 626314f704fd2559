"""Byte-level BPE tokenizer for text, saved in Hugging Face format.

`train_bpe` trains GPT-2-style byte-level BPE with the `tokenizers` library: text is split by the
ByteLevel pre-tokenizer's regex and every byte is in the base alphabet, so no character is ever
unknown and `decode(encode(s)) == s` for any string. Special tokens come first in the vocabulary:
`<|endoftext|>` (id 0; the end of every document, and also the start token), `<pad>`, `<mask>`,
`<cls>`, `<unk>` (kept for tools that expect one; byte-level encoding never produces it).

`TextTokenizer` wraps the `transformers` fast tokenizer and offers the interface biofm's trainer
uses for every modality (`vocab_size`, `pad_id`, `mask_id`, `cls_id`, `eos_id`, `special_ids`,
`save`, `load`). Its `encode` never turns text into a special token: a document that happens to
contain the string `<mask>` is tokenised as those characters, so corpus text cannot forge document
boundaries or masks. A saved folder loads with plain `AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biofm.errors import BiofmError
from biofm.io.atomic import write_files_into

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["EOS", "SPECIAL_TOKENS", "TextTokenizer", "train_bpe"]

EOS, PAD, MASK, CLS, UNK = "<|endoftext|>", "<pad>", "<mask>", "<cls>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (EOS, PAD, MASK, CLS, UNK)
# Key in tokenizer_config.json naming the tokenizer's origin; transformers keeps unknown keys.
CONFIG_KEY = "biofm_text_tokenizer"


class TextTokenizer:
    """A `transformers` fast tokenizer with the special-token interface biofm's trainer expects."""

    def __init__(self, hf: PreTrainedTokenizerFast):
        from tokenizers import Tokenizer

        self.hf = hf
        missing = {name: tok for name, tok in (("eos", EOS), ("pad", PAD), ("mask", MASK), ("cls", CLS))
                   if getattr(hf, f"{name}_token_id") is None}
        if missing:
            # A tokenizer from elsewhere (e.g. GPT-2's) may lack some; add them so every role has an id.
            hf.add_special_tokens({f"{name}_token": tok for name, tok in missing.items()})
        if hf.bos_token_id is None:
            hf.add_special_tokens({"bos_token": hf.eos_token})
        self.eos_id = int(hf.eos_token_id)
        self.pad_id = int(hf.pad_token_id)
        self.mask_id = int(hf.mask_token_id)
        self.cls_id = int(hf.cls_token_id)
        self.bos_id = int(hf.bos_token_id)
        self.unk_id = None if hf.unk_token_id is None else int(hf.unk_token_id)
        self.special_ids: frozenset[int] = frozenset(int(i) for i in hf.all_special_ids)
        # A private copy that never matches special-token strings inside ordinary text.
        self._raw = Tokenizer.from_str(hf.backend_tokenizer.to_str())
        self._raw.encode_special_tokens = True
        self._raw.no_truncation()
        self._raw.no_padding()
        self._identity: str | None = None
        self._token_bytes: np.ndarray | None = None

    # ------------------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included (the model's embedding needs this many rows)."""
        return len(self.hf)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size})"

    @property
    def identity(self) -> str:
        """SHA-256 of the tokenizer's full JSON definition: equal for equal tokenizers (cache keys)."""
        if self._identity is None:
            self._identity = hashlib.sha256(self.hf.backend_tokenizer.to_str().encode()).hexdigest()
        return self._identity

    @property
    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes each id stands for (0 for specials): turns a per-token loss into bits per byte."""
        if self._token_bytes is None:
            byte_level = _is_byte_level(self.hf)
            vocab = self.hf.get_vocab()
            out = np.zeros(self.vocab_size, dtype=np.int32)
            for token, i in vocab.items():
                if i in self.special_ids or i >= len(out):
                    continue
                if byte_level:
                    out[i] = len(token)  # one character per byte in the ByteLevel alphabet
                else:
                    out[i] = len(self.hf.convert_tokens_to_string([token]).encode("utf-8"))
            self._token_bytes = out
        return self._token_bytes

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens (special-token strings in the text stay text)."""
        return self._raw.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` for many texts at once (the `tokenizers` library runs them in parallel)."""
        if not texts:
            return []
        fast = getattr(self._raw, "encode_batch_fast", None) or self._raw.encode_batch
        return [e.ids for e in fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Any, *, skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in np.asarray(ids).ravel()]
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)

    def convert_ids_to_tokens(self, ids: Any) -> list[str]:
        return self.hf.convert_ids_to_tokens([int(i) for i in np.asarray(ids).ravel()])

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the Hugging Face tokenizer files into folder `path` (loadable by `AutoTokenizer` alone).

        Like `save_pretrained`, an existing folder is added to (so the tokenizer can sit beside a
        model's weights), each file renamed into place; a new folder appears all at once.
        """
        return write_files_into(path, self._write_hf, prefix=".biofm-tokenizer-")

    def _write_hf(self, folder: Path) -> None:
        self.hf.save_pretrained(str(folder))
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        # "PreTrainedTokenizerFast" is understood by transformers 4 and 5 alike.
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg["clean_up_tokenization_spaces"] = False
        cfg[CONFIG_KEY] = "byte-level-bpe" if _is_byte_level(self.hf) else "external"
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        specials = {name: getattr(self.hf, name) for name in
                    ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "cls_token")
                    if getattr(self.hf, name, None) is not None}
        (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        """Load a Hugging Face fast-tokenizer folder (one written by `save`, or any with tokenizer.json)."""
        from transformers import PreTrainedTokenizerFast

        folder = Path(path)
        if not folder.is_dir():
            raise BiofmError(f"{folder}: tokenizer folder not found")
        if not (folder / "tokenizer.json").is_file():
            raise BiofmError(f"{folder}: not a Hugging Face fast tokenizer folder (no tokenizer.json)")
        try:
            hf = PreTrainedTokenizerFast.from_pretrained(str(folder), clean_up_tokenization_spaces=False)
        except Exception as exc:  # transformers raises many kinds; all mean "unreadable"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BiofmError(f"{folder}: unreadable tokenizer files ({first})") from None
        return cls(hf)


def _is_byte_level(hf: Any) -> bool:
    pre = json.loads(hf.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel":
        return True
    return any(p.get("type") == "ByteLevel" for p in pre.get("pretokenizers", []) or [])


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> TextTokenizer:
    """Train byte-level BPE on `texts` (any iterable: it is consumed once, never held whole)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise BiofmError(f"tokenizer.vocab_size={vocab_size}: byte-level BPE needs at least "
                         f"{256 + len(SPECIAL_TOKENS)} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        mask_token=MASK,
        cls_token=CLS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )
    return TextTokenizer(hf)
