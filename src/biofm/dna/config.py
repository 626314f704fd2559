"""Settings for reading DNA into pretraining blocks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from biofm.config import Schema


class DnaDataConfig(Schema):
    fasta: list[str] = Field(default_factory=list, description="FASTA / FASTA.gz files")
    bed: str | None = Field(None, description="BED intervals, read against the first FASTA")
    window_bp: int | None = Field(None, description="window length; null/omitted = (block_tokens - 1) * k")
    stride_bp: int | None = Field(None, description="step between windows; null/omitted = window_bp")
    max_n_fraction: float = Field(0.1, ge=0, le=1)
    reverse_complement: bool = False
    split: Literal["region", "record"] = "region"
    val_fraction: float = Field(0.05, ge=0, lt=1)
    region_bp: PositiveInt = 100_000
    pack: bool = Field(True, description="pack windows end to end into full blocks (each window still starts "
                                         "with <cls>): short windows (BED intervals, record ends) leave no "
                                         "padding and N-rich windows are not truncated; false = one window "
                                         "per block, padded or truncated")
    cache_dir: str | None = Field(None, description="default $BIOFM_CACHE or .cache/biofm")

    @field_validator("window_bp", "stride_bp")
    @classmethod
    def _positive_or_default(cls, v: int | None) -> int | None:
        """0 once meant "the default" without saying so; the default is now only ever null/omitted."""
        if v is not None and v < 1:
            raise ValueError("must be a positive number of bases; for the default, omit the key (or set it "
                             "to null)")
        return v

    @model_validator(mode="after")
    def _needs_input(self) -> DnaDataConfig:
        if not self.fasta:
            raise ValueError("data.fasta must list at least one FASTA file")
        return self


class KmerTokenizerConfig(Schema):
    k: int = Field(6, ge=1, le=8)
    path: str | None = Field(None, description="use this saved tokenizer folder instead of building one")
