"""Biomedical text: corpus reading and cleaning, byte-level BPE, LM blocks, classification tasks.

Heavy dependencies (tokenizers, transformers, datasets, scikit-learn) are imported by the
submodules that need them, so `import biofm.text` stays cheap.
"""

from biofm.text.config import CleaningConfig, TextDataConfig, TextTokenizerConfig

__all__ = ["CleaningConfig", "TextDataConfig", "TextTokenizerConfig"]
