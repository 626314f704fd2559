"""DNA: FASTA/BED reading, k-mer tokenisation, masked-LM pretraining (Nucleotide Transformer style),
sequence tasks and their baselines, variant scoring."""

from biofm.modality import Modality

MODALITY = Modality(
    name="dna",
    description="DNA sequences: FASTA genomes, k-mer tokens, masked-LM (Nucleotide Transformer style)",
    pretrain_schema="biofm.dna.pretrain:DnaPretrainConfig",
    prepare="biofm.dna.pretrain:prepare",
    evaluation="biofm.dna.evaluation",
    baseline_schema="biofm.dna.baselines:BaselineConfig",
    baseline_key="baselines",
    demo="biofm.dna.demo",
    demo_run_dir="runs/demo",
    verbs={
        "score_variants": "biofm.dna.variants:score_variants",
        "read_sequences": "biofm.dna.inputs:read_sequences",
        "masked_pieces": "biofm.dna.inputs:masked_pieces",
        "tokenizer_train": "biofm.dna.tokenizer:train_command",
        "tokenizer_encode": "biofm.dna.tokenizer:encode_command",
        "element_windows": "biofm.dna.elements:element_windows",
        "published_family": "biofm.dna.published:published_family",
        "published_tokenizer": "biofm.dna.published:published_tokenizer",
    },
)
