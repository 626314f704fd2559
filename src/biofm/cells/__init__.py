"""Single-cell RNA-seq: h5ad counts, gene + value (scGPT style) or rank-value (Geneformer style) tokens,
cell objectives, cell-type tasks against PCA / HVG baselines, embeddings into AnnData."""

from biofm.modality import Modality

MODALITY = Modality(
    name="cells",
    description="single-cell RNA-seq counts (h5ad): gene + value or rank-value tokens",
    pretrain_schema="biofm.cells.pretrain:CellPretrainConfig",
    prepare="biofm.cells.pretrain:prepare",
    evaluation="biofm.cells.evaluation",
    baseline_schema="biofm.cells.baselines:CellBaselineConfig",
    baseline_key="cell_baselines",
    demo="biofm.cells.demo",
    demo_run_dir="runs/demo-cells",
    verbs={"embed_h5ad": "biofm.cells.geneformer:embed_h5ad", "embed_adata": "biofm.cells.geneformer:embed_adata",
           "card_usage": "biofm.cells.embed:card_usage",
           "published_family": "biofm.cells.geneformer:published_family",
           "published_tokenizer": "biofm.cells.geneformer:published_tokenizer",
           "published_embeddings": "biofm.cells.geneformer:task_embeddings"},
    pipeline_tag="feature-extraction",
)
