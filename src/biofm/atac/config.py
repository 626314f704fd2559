"""Settings for reading scATAC-seq peak matrices and turning cells into model inputs.

Two model designs share the data settings (`AtacPretrainConfig.design` picks one):
- `peak_tokens`: a cell is the set of its accessible peaks, one token per peak (`AtacTokenizerConfig`);
- `patch_cnn`: the seed project's design, the cell's whole binarised peak vector cut into patches by a
  strided CNN (`AtacPatchConfig`).

Binarisation policy (both designs): a peak is accessible in a cell when its count is > 0. scATAC counts
are mostly 1 or 2 (two Tn5 cuts of one fragment, or a diploid locus open on both alleles), so the count
above 1 says little about accessibility and much about fragment duplicates; ArchR, Signac and
SnapATAC2 binarise the same way.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt, field_validator, model_validator

from biofm.config import Schema


class AtacDataConfig(Schema):
    """Where the cells come from and how they are split.

    Several files are allowed when they hold the same peaks (matched by coordinates, in any column
    order); cells are split into train / validation at random (seeded), across all files together.
    """

    h5ad: list[str] = Field(description="one or more .h5ad files of cells x peaks counts (or dataset:NAME)")
    layer: str | None = Field(None, description="layer holding the counts; default X")
    peak_column: str | None = Field(None, description="var column with the peak names (chr_start_end or "
                                                      "chr:start-end); default the var names")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="fraction of cells held out for the honest eval")

    @field_validator("h5ad", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _needs_input(self) -> AtacDataConfig:
        if not self.h5ad:
            raise ValueError("data.h5ad must list at least one .h5ad file")
        return self


class AtacTokenizerConfig(Schema):
    """Peak tokens (design `peak_tokens`).

    A cell is `<cls>` followed by its accessible peaks as peak-id tokens in genome order. Token budget:
    a cell with more than `max_peaks` accessible peaks keeps a uniform random subset of `max_peaks` of
    them (seeded by the seed and the cell's row, so the same cell always keeps the same subset), still in
    genome order; the rest of the row is not stored or padded (a batch is padded only to its longest cell).

    Genomic position: BERT's position ids carry the peak's place on the genome, not its rank in the
    cell: position = 1 + chromosome slot x bins per chromosome + (peak midpoint // position_bin_bp)
    (0 is `<cls>`). The peak id already names the peak, but its embedding is learned only from that
    peak's own occurrences; the position embedding is shared by every peak in the same window of the same
    chromosome (1 Mb: the scale of TADs and co-accessibility domains), so neighbouring peaks start out
    related and the chromosome is visible. The token type then stays free for the peak's state
    (accessible / hidden query), as the cell model uses it for the value.
    """

    max_peaks: PositiveInt = Field(512, description="accessible peaks per cell at most (the token budget)")
    position_bin_bp: PositiveInt = Field(1_000_000, description="genomic window of one position id, in bp")


class AtacPatchConfig(Schema):
    """The patch CNN (design `patch_cnn`): the cell's binarised vector over all peaks (genome order) goes
    through Conv1d layers whose kernel equals their stride, so each output patch sees exactly
    prod(conv_strides) consecutive peaks and nothing of its neighbours (a hidden patch leaks nothing)."""

    conv_strides: list[PositiveInt] = Field(default_factory=lambda: [10, 5],
                                            description="stride (= kernel) of each Conv1d; patch = product")
    conv_channels: PositiveInt = Field(64, description="channels between the Conv1d layers")

    @property
    def patch_size(self) -> int:
        out = 1
        for s in self.conv_strides:
            out *= s
        return out

    @field_validator("conv_strides")
    @classmethod
    def _some(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("conv_strides needs at least one layer")
        return v
