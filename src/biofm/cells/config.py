"""Settings for reading single-cell count matrices and turning cells into token sequences."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from biofm.config import Schema


class CellDataConfig(Schema):
    """Where the cells come from and how they are split.

    Every file is tokenised against the same gene vocabulary (built from the training cells of all
    files together unless one is given); a file's genes missing from the vocabulary are dropped.
    Cells are split into train/validation at random (seeded), across all files together.
    """

    h5ad: list[str] = Field(description="one or more .h5ad files with raw counts")
    layer: str | None = Field(None, description="layer holding the raw counts ('raw' = .raw.X); default X")
    gene_column: str | None = Field(None, description="var column with the gene ids (e.g. gene_ids); "
                                                      "default the var names")
    allow_non_counts: bool = Field(False, description="accept non-integer (e.g. log-normalised) values")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of cells held out for evaluation")
    cache_dir: str | None = Field(None, description="default $BIOFM_CACHE or .cache/biofm")
    chunk_cells: PositiveInt = Field(4096, description="cells read, checked and tokenised at a time: bounds the "
                                                       "build's memory; the dataset does not depend on it")
    median_exact_values: PositiveInt = Field(1 << 22, description="non-zero training values held at once for "
                                                                   "exact per-gene medians; past it, a per-gene "
                                                                   "histogram and one more pass (see cells.data)")

    @field_validator("h5ad", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _needs_input(self) -> CellDataConfig:
        if not self.h5ad:
            raise ValueError("data.h5ad must list at least one .h5ad file")
        return self


class CellTokenizerConfig(Schema):
    """How a cell becomes a sequence: `<cls>` then up to `max_genes` (gene, value) positions.

    Modes
    - `gene_value` (scGPT-like): each position is a gene id plus a value bin. Binning:
      `fixed`: bin = the count itself, counts above `cap` go into bin `cap` (cap + 1 bins, 0..cap);
      non-integer values (only with data.allow_non_counts) are rounded up first, so any non-zero value
      is in a non-zero bin. `quantile` (scGPT): bin 0 = zero; a non-zero value gets
      bin = number of edges <= value (np.digitize), clipped into 1..n_bins-1, where the edges are
      np.quantile(the cell's non-zero counts over the vocabulary's genes, linspace(0, 1, n_bins - 1)).
      scGPT breaks ties between equal edges at random; here the rule is deterministic.
    - `rank_value` (Geneformer, a plain BERT masked LM over gene ids): the cell's non-zero genes
      ordered by count / the gene's corpus median (median over training cells of the gene's non-zero
      count / cell total * 10,000), highest first, ties by gene id, truncated to `max_genes`; no zero
      genes and no values (the value column is -1).

    Which genes enter a `gene_value` sequence (`max_genes` slots; only genes in the vocabulary count):
    - `top`: the non-zero genes with the highest counts (ties broken by gene id), at most `max_genes`;
      only if the cell has fewer non-zero genes than `max_genes`, zero genes fill the free slots, at most
      round(zero_fraction * max_genes) of them, sampled uniformly as below.
    - `sample`: let K = max_genes - round(zero_fraction * max_genes). A cell with <= K non-zero genes
      puts all of them in; otherwise K of them are sampled uniformly without replacement. The remaining
      slots (at most round(zero_fraction * max_genes), and only if the cell has zero genes) are given to
      zero genes sampled uniformly without replacement.
    Sampling uses a per-cell RNG seeded by (seed, cell number), so it is reproducible. In `gene_value`
    mode the chosen genes are ordered by vocabulary id (not by expression, so position leaks no
    value); the rest of the row is padding.
    """

    mode: Literal["gene_value", "rank_value"] = "gene_value"
    binning: Literal["fixed", "quantile"] = "quantile"
    cap: PositiveInt = Field(100, description="fixed binning: counts above cap share bin cap")
    n_bins: int = Field(51, ge=3, le=2**15 - 1, description="quantile binning: bin 0 = zero + n_bins - 1 bins")
    max_genes: PositiveInt = Field(1000, description="positions per cell, excluding <cls>")
    selection: Literal["top", "sample"] = "sample"
    zero_fraction: float = Field(0.1, ge=0, lt=1, description="share of the slots given to zero genes")
    vocab_path: str | None = Field(None, description="reuse this saved gene vocabulary (a tokenizer or model "
                                                     "folder)")
    min_cells: PositiveInt = Field(1, description="genes expressed in fewer training cells are left out")

    @field_validator("cap")
    @classmethod
    def _cap_fits(cls, v: int) -> int:
        if v > 2**15 - 2:
            raise ValueError(f"cap must be at most {2**15 - 2} (value bins are stored as int16)")
        return v
