"""Settings of the multiome plug-in: where paired cells come from, which features become tokens, the
objectives' weights.

Two modalities of the same cells (RNA + ATAC, or RNA + protein) are read from one `.h5mu` (MuData) or two
`.h5ad` files whose obs names are the cells. `modalities` maps each ROLE the model knows (`rna`, `atac`,
`protein`) to the modality's name in the file (TEA-seq's MuData calls its proteins `adt`).
"""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from biofm.config import Schema

ROLES = ("rna", "atac", "protein")


class MultiomeDataConfig(Schema):
    """Paired cells: one MuData file or one h5ad per role; cells in one modality only are reported and
    dropped; features are chosen on the training cells only."""

    h5mu: str | None = Field(None, description=".h5mu file (MuData), or dataset:NAME")
    h5ad: dict[str, str] | None = Field(None, description="role -> .h5ad file with the same cell names "
                                                                 "(or dataset:NAME)")
    modalities: dict[str, str] = Field(default_factory=lambda: {"rna": "rna", "atac": "atac"},
                                       description="role (rna, atac, protein) -> modality name in the .h5mu")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="cells held out for the honest eval (and for "
                                                             "judging cross-modal prediction later)")
    max_cells: PositiveInt | None = Field(None, description="a seeded random subset of the paired cells "
                                                            "(for quick runs); default all")
    max_genes: PositiveInt = Field(2000, description="RNA features: the highly variable genes of the training "
                                                     "cells (scanpy's seurat flavour)")
    max_peaks: PositiveInt = Field(5000, description="ATAC features: the most often accessible peaks of the "
                                                     "training cells")

    @model_validator(mode="after")
    def _coherent(self) -> MultiomeDataConfig:
        if (self.h5mu is None) == (self.h5ad is None):
            raise ValueError("data: give either h5mu (one MuData file) or h5ad (role -> file), not both")
        roles = list(self.h5ad) if self.h5ad is not None else list(self.modalities)
        bad = [r for r in roles if r not in ROLES]
        if bad:
            raise ValueError(f"data: unknown modality role {bad[0]!r}; choose from {', '.join(ROLES)}")
        if len(roles) != 2:
            raise ValueError(f"data: name exactly two modalities (got {', '.join(roles) or 'none'}); the model "
                             "pairs one modality with the other")
        return self

    def roles(self) -> list[str]:
        """The two roles in canonical order (rna, atac, protein)."""
        named = self.h5ad if self.h5ad is not None else self.modalities
        return [r for r in ROLES if r in named]


class MultiomeTokenConfig(Schema):
    """How a cell becomes tokens: `<cls>`, then per role its features (token type = the role).

    RNA: the cell's detected genes (count > 0) with their value class; ATAC: its accessible peaks;
    protein: every protein with its value class. A cell with more than `max_rna_tokens` genes or
    `max_atac_tokens` peaks keeps a seeded random subset (the token budget)."""

    n_bins: int = Field(8, ge=3, le=64, description="value classes per feature: RNA 0 = not detected, then "
                                                    "quantiles of the detected values; protein quantiles")
    max_rna_tokens: PositiveInt = 256
    max_atac_tokens: PositiveInt = 256
    cross_queries: PositiveInt = Field(256, description="features of the hidden modality queried per cell "
                                                        "(uniformly, so the query set says nothing); proteins: all")


class MultiomeObjectivesConfig(Schema):
    """Loss weights (0 = off)."""

    masked: float = Field(1.0, ge=0, description="values hidden within each modality (RNA / protein value "
                                                 "class, peak accessibility)")
    cross: float = Field(1.0, ge=0, description="one whole modality hidden, predicted from the other alone")
    contrastive: float = Field(0.5, ge=0, description="CLIP-style alignment of the two per-modality embeddings")
    temperature: float = Field(0.1, gt=0)
    projection_dim: int = Field(64, ge=8)
    query_negatives: float = Field(1.0, gt=0, description="masked peaks: inaccessible query peaks per hidden "
                                                          "accessible one (expected)")

    def weights(self) -> dict[str, float]:
        return {"masked": self.masked, "cross": self.cross, "contrastive": self.contrastive}

    @model_validator(mode="after")
    def _some(self) -> MultiomeObjectivesConfig:
        if not any(v > 0 for v in self.weights().values()):
            raise ValueError("objectives: give masked, cross or contrastive a weight > 0")
        return self



__all__ = ["ROLES", "MultiomeDataConfig", "MultiomeObjectivesConfig", "MultiomeTokenConfig"]
