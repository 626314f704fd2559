"""`biofm pretrain`: config → tokenizer → blocks → model → shared trainer → run folder.

The modality part (reading, tokenising, blocks) is chosen by `modality`; everything after it —
trainer, health verdict, plots, report — is shared.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from biofm import config as cfgmod
from biofm.config import Schema
from biofm.dna.config import DnaDataConfig, KmerTokenizerConfig
from biofm.errors import BiofmError
from biofm.health.doctor import diagnose
from biofm.health.plots import plot_loss
from biofm.io.atomic import atomic_path, write_json
from biofm.models.presets import build_config, build_model, get_preset
from biofm.report.html import write_report
from biofm.train.config import TrainConfig
from biofm.train.loop import TrainData, Trainer, TrainingDiverged
from biofm.train.masking import MaskSpec


class ModelConfig(Schema):
    preset: str = "tiny"
    block_tokens: int | None = Field(None, ge=8, description="tokens per block incl. <cls>; default preset's context")
    overrides: dict[str, Any] = Field(default_factory=dict, description="transformers config fields to change")


class PretrainConfig(Schema):
    name: str = "run"
    run_dir: str | None = Field(None, description="default runs/NAME under the working directory")
    seed: int = 0
    modality: Literal["dna"] = "dna"
    data: DnaDataConfig
    tokenizer: KmerTokenizerConfig = Field(default_factory=KmerTokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


@dataclass
class Prepared:
    tokenizer: Any  # has .save(path), .vocab_size, ids of specials
    data: TrainData
    meta: dict[str, Any]


def prepare_dna(cfg: PretrainConfig, block: int) -> Prepared:
    from biofm.data.blocks import unigram_logp
    from biofm.dna.data import build_blocks
    from biofm.dna.tokenizer import KmerTokenizer

    tok = KmerTokenizer.load(cfg.tokenizer.path) if cfg.tokenizer.path else KmerTokenizer(cfg.tokenizer.k)
    blocks = build_blocks(cfg.data, tok, block, cfg.seed)
    special = np.asarray(sorted(tok.special_ids))
    real = np.setdiff1d(np.arange(tok.vocab_size), special)
    data = TrainData(
        train_ids=blocks.train, eval_ids=blocks.val,
        mask=MaskSpec(mask_id=tok.mask_id, special_ids=tuple(int(i) for i in special), random_ids=real,
                      prob=cfg.train.mask_prob),
        pad_id=tok.pad_id, unigram_logp=unigram_logp(blocks.counts, real), n_real_tokens=len(real),
        token_units=tok.token_bases, unit_name="base",
    )
    return Prepared(tok, data, {"dataset": str(blocks.path), **blocks.meta})


PREPARE = {"dna": prepare_dna}


def run(cfg: PretrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    import torch
    from accelerate import PartialState

    # joins the process group under torchrun / accelerate launch (gloo on CPU); a no-op otherwise
    dist = PartialState(cpu=not torch.cuda.is_available())
    run_dir = cfg.resolved_run_dir()
    exists = run_dir.exists() and any(run_dir.iterdir())
    if exists and not resume and not overwrite:
        raise BiofmError(f"{run_dir}: run folder exists; pass --resume to continue it or --overwrite to start over")
    preset = get_preset(cfg.model.preset)
    block = cfg.model.block_tokens or preset.max_len
    if block > preset.max_len and "max_position_embeddings" not in cfg.model.overrides:
        raise BiofmError(f"model.block_tokens={block} exceeds the {preset.name} preset's context of {preset.max_len}")
    dist.wait_for_everyone()  # every rank has checked the folder before rank 0 touches it
    if dist.is_main_process:
        if exists and not resume:
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfgmod.save(cfg, run_dir / "config.yaml")
    with dist.main_process_first():  # rank 0 tokenises; the others then find the cache
        prepared = PREPARE[cfg.modality](cfg, block)
    tok = prepared.tokenizer
    if dist.is_main_process:
        with atomic_path(run_dir / "tokenizer", is_dir=True) as tmp:
            tok.save(tmp)
    model_cfg = build_config(preset, vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                             cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=max(block, preset.max_len),
                             overrides=cfg.model.overrides)
    model = build_model(model_cfg, seed=cfg.seed)
    trainer = Trainer(model, cfg.train, prepared.data, run_dir, seed=cfg.seed, progress=progress)
    try:
        summary = trainer.fit(resume=resume)
        summary["status"] = "finished"
    except TrainingDiverged as exc:
        if trainer.is_main:
            write_json(run_dir / "summary.json", {"status": "diverged", "error": str(exc)})
            finish_run(run_dir)
        raise
    summary["data"] = prepared.meta
    summary["preset"] = preset.name
    if trainer.is_main:
        final = trainer.acc.unwrap_model(trainer.objective).model
        with atomic_path(run_dir / "model", is_dir=True) as tmp:
            final.save_pretrained(tmp)
            tok.save(tmp)
        write_json(run_dir / "summary.json", summary)
        finish_run(run_dir)
    trainer.acc.wait_for_everyone()
    return run_dir


def finish_run(run_dir: Path, sections: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Plot, diagnose and write the report from what is in the run folder; returns the diagnosis."""
    from biofm.health.doctor import load_run

    summary, rows = load_run(run_dir)
    plot_loss(rows, summary, run_dir / "loss.png")
    diag = diagnose(summary, rows).to_dict()
    if summary:
        summary["health"] = diag
        write_json(run_dir / "summary.json", summary)
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else ""
    write_report(run_dir, summary, diag, config_text, sections)
    return diag



def load_config(path: str | Path | None, overrides: list[str]) -> PretrainConfig:
    return cfgmod.load(PretrainConfig, path, overrides)


__all__ = ["PretrainConfig", "finish_run", "load_config", "run"]
