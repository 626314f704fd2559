"""Settings for reading biomedical text into pretraining blocks and for its tokenizer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from biofm.config import Schema

# A byte-level BPE vocabulary holds the 256 bytes and the 5 special tokens before any merge.
MIN_VOCAB = 256 + 5


class CleaningConfig(Schema):
    """Which cleaning steps run on each document (see `biofm.text.corpus` for what each one does)."""

    citations: bool = Field(True, description="remove numeric citation markers such as [1], [2,3], [4-6]")
    whitespace: bool = Field(True, description="collapse whitespace runs (newlines included) to one space; strip")
    control_chars: bool = Field(True, description="remove control characters (C0/C1, DEL)")
    ascii_only: bool = Field(False, description="drop every non-ASCII character")
    dedup: bool = Field(True, description="drop exact duplicates of an earlier cleaned document")
    min_chars: PositiveInt = Field(1, description="drop documents shorter than this after cleaning")


class TextDataConfig(Schema):
    paths: list[str] = Field(description=".txt / .jsonl files (optionally .gz) or folders of them")
    text_field: str = Field("text", min_length=1, description="the field of each .jsonl object holding the text")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="share of documents held out for validation")
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    tail: Literal["drop", "pad"] = Field("drop", description="the last partial block of each split: drop or pad it")
    cache_dir: str | None = Field(None, description="default $BIOFM_CACHE or .cache/biofm")

    @field_validator("paths")
    @classmethod
    def _needs_input(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("data.paths must list at least one text file or folder")
        return v


class TextTokenizerConfig(Schema):
    path: str | None = Field(None, description="use this Hugging Face tokenizer folder instead of training one")
    vocab_size: int = Field(4096, ge=MIN_VOCAB, description="byte-level BPE vocabulary size, specials included")
    min_frequency: PositiveInt = Field(2, description="a merge must occur at least this often in the corpus")
