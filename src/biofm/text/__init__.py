"""Biomedical text: corpus reading and cleaning, byte-level BPE, LM blocks, classification tasks.

Heavy dependencies (tokenizers, transformers, datasets, scikit-learn) are imported by the
submodules that need them, so `import biofm.text` stays cheap.
"""

from biofm.modality import Modality
from biofm.text.config import CleaningConfig, TextDataConfig, TextTokenizerConfig

MODALITY = Modality(
    name="text",
    description="biomedical text: byte-level BPE, causal (GPT-2 / Llama) or masked (BERT) LMs",
    pretrain_schema="biofm.text.pretrain:TextPretrainConfig",
    prepare="biofm.text.pretrain:prepare",
    evaluation="biofm.text.evaluation",
    baseline_schema="biofm.text.baselines:TextBaselineConfig",
    baseline_key="text_baselines",
    demo="biofm.text.demo",
    demo_run_dir="runs/demo-text",
    verbs={"masked_pieces": "biofm.text.inputs:masked_pieces"},
)

__all__ = ["MODALITY", "CleaningConfig", "TextDataConfig", "TextTokenizerConfig"]
