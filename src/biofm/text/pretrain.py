"""Text part of `biofm pretrain`: corpus → cleaned documents → BPE → packed blocks → CLM or MLM.

Causal presets (GPT-2, Llama) train next-token prediction; masked ones (BERT) train BERT's masked LM.
Either way blocks are documents concatenated with an end-of-text token and cut to a fixed length,
never one padded example per document.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from biofm.data.blocks import unigram_logp
from biofm.models.presets import CAUSAL_ARCHS, Preset
from biofm.pretraining import Prepared, PretrainBase, new_model
from biofm.text.config import TextDataConfig, TextTokenizerConfig
from biofm.train.loop import TrainData
from biofm.train.masking import MaskSpec
from biofm.train.objectives import CausalLMObjective, MaskedLMObjective


class TextPretrainConfig(PretrainBase):
    modality: Literal["text"] = "text"
    data: TextDataConfig
    tokenizer: TextTokenizerConfig = Field(default_factory=TextTokenizerConfig)


def token_chars(tok) -> np.ndarray:
    """Characters each token decodes to, for bits per character (0 for specials)."""
    out = np.zeros(tok.vocab_size, dtype=np.float32)
    for i in range(tok.vocab_size):
        if i not in tok.special_ids:
            out[i] = len(tok.decode([i]))
    return out


def prepare(cfg: TextPretrainConfig, preset: Preset, block: int) -> Prepared:
    from biofm.text.data import build_text_blocks, prepare_tokenizer
    from biofm.text.tokenizer import TextTokenizer

    if cfg.model.init_from:
        tok = TextTokenizer.load(cfg.tokenizer.path or cfg.model.init_from)
    else:
        tok = prepare_tokenizer(cfg.data, cfg.tokenizer, cfg.seed)
    model = new_model(cfg, preset, tok, block)
    causal = model.config.model_type in CAUSAL_ARCHS
    blocks = build_text_blocks(cfg.data, tok, block, cfg.seed, add_cls=not causal)
    special = np.asarray(sorted(tok.special_ids))
    real = np.setdiff1d(np.arange(tok.vocab_size), special)
    units = token_chars(tok)
    if causal:
        targets = np.union1d(real, [tok.eos_id])  # the end of a document is predictable and predicted
        units[tok.eos_id] = 1.0
        objective = CausalLMObjective(model, tok.pad_id, targets, unigram_logp(blocks.counts, targets),
                                      token_units=units, unit_name="char")
    else:
        mask = MaskSpec(mask_id=tok.mask_id, special_ids=tuple(int(i) for i in special), random_ids=real,
                        prob=cfg.train.mask_prob)
        objective = MaskedLMObjective(model, mask, tok.pad_id, unigram_logp(blocks.counts, real),
                                      token_units=units, unit_name="char")
    data = TrainData(train=blocks.train, eval=blocks.val, seq_len=block)
    return Prepared(tok, objective, data, {"dataset": str(blocks.path), "cleaning": blocks.cleaning,
                                           **blocks.meta})
