"""Single-cell ATAC-seq: h5ad cell x peak counts, binarised; peak-id tokens with genomic positions
(masked-peak accessibility) or the seed's CNN patches of the peak vector (contrastive / masked patches);
cell-type tasks against LSI and spectral baselines; embeddings into AnnData."""

from biofm.modality import Modality

MODALITY = Modality(
    name="atac",
    description="single-cell ATAC-seq peak counts (h5ad): peak-id tokens or CNN patches of the peak vector",
    pretrain_schema="biofm.atac.pretrain:AtacPretrainConfig",
    prepare="biofm.atac.pretrain:prepare",
    evaluation="biofm.atac.evaluation",
    baseline_schema="biofm.atac.baselines:AtacBaselineConfig",
    baseline_key="atac_baselines",
    demo="biofm.atac.demo",
    demo_run_dir="runs/demo-atac",
    verbs={"embed_h5ad": "biofm.atac.embed:embed_h5ad"},
    pipeline_tag="feature-extraction",
)
