"""DNA's part of `biofm pretrain`: FASTA → k-mer blocks → a masked-LM objective."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from biofm.data.blocks import unigram_logp
from biofm.dna.config import DnaDataConfig, KmerTokenizerConfig
from biofm.dna.data import build_blocks
from biofm.dna.tokenizer import KmerTokenizer
from biofm.models.presets import Preset
from biofm.pretraining import Prepared, PretrainBase, new_model
from biofm.train.loop import TrainData
from biofm.train.masking import MaskSpec
from biofm.train.objectives import MaskedLMObjective


class DnaPretrainConfig(PretrainBase):
    """DNA (the default modality when a config names none)."""

    modality: Literal["dna"] = "dna"
    data: DnaDataConfig
    tokenizer: KmerTokenizerConfig = Field(default_factory=KmerTokenizerConfig)


def load_tokenizer(cfg: DnaPretrainConfig) -> KmerTokenizer:
    path = cfg.tokenizer.path or cfg.model.init_from
    return KmerTokenizer.load(path) if path else KmerTokenizer(cfg.tokenizer.k)


def prepare(cfg: DnaPretrainConfig, preset: Preset, block: int) -> Prepared:
    tok = load_tokenizer(cfg)
    blocks = build_blocks(cfg.data, tok, block, cfg.seed)
    special = np.asarray(sorted(tok.special_ids))
    real = np.setdiff1d(np.arange(tok.vocab_size), special)
    mask = MaskSpec(mask_id=tok.mask_id, special_ids=tuple(int(i) for i in special), random_ids=real,
                    prob=cfg.train.mask_prob)
    model = new_model(cfg, preset, tok, block)
    objective = MaskedLMObjective(model, mask, tok.pad_id, unigram_logp(blocks.counts, real),
                                  token_units=tok.token_bases, unit_name="base")
    objective.advice = ("a smaller k (tokenizer.k) gives more context per base and learns sooner",)
    data = TrainData(train=blocks.train, eval=blocks.val, seq_len=block)
    return Prepared(tok, objective, data, {"dataset": str(blocks.path), **blocks.meta})
