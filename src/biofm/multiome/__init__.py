"""Paired multi-omics of the same cells (RNA + ATAC, RNA + protein) in one BERT: gene / peak / protein
tokens with values and a modality-type embedding; masked values, whole-modality hiding and CLIP-style
alignment, each against its context-free baseline; cell types from the joint embedding and cross-modal
prediction against PCA / LSI ridge, kNN and per-feature-mean baselines."""

from biofm.modality import Modality

MODALITY = Modality(
    name="multiome",
    description="paired multi-omics (.h5mu, or two .h5ad): RNA + ATAC or RNA + protein in one encoder",
    pretrain_schema="biofm.multiome.pretrain:MultiomePretrainConfig",
    prepare="biofm.multiome.pretrain:prepare",
    evaluation="biofm.multiome.evaluation",
    baseline_schema="biofm.multiome.baselines:MultiomeBaselineConfig",
    baseline_key="multiome_baselines",
    demo="biofm.multiome.demo",
    demo_run_dir="runs/demo-multiome",
)
