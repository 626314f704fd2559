"""`biofm pretrain`: config → tokenizer → blocks → model → shared trainer → run folder.

The modality part (reading, tokenising, blocks) is chosen by `modality`; everything after it —
trainer, health verdict, plots, report — is shared.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from transformers import PreTrainedModel

from biofm import config as cfgmod
from biofm.config import Schema
from biofm.dna.config import DnaDataConfig, KmerTokenizerConfig
from biofm.errors import BiofmError
from biofm.health.doctor import diagnose
from biofm.health.plots import plot_loss
from biofm.io.atomic import atomic_path, write_json
from biofm.models.presets import Preset, build_config, build_model, get_preset
from biofm.report.html import write_report
from biofm.train.config import TrainConfig
from biofm.train.loop import TrainData, Trainer, TrainingDiverged
from biofm.train.objectives import Objective


class ModelConfig(Schema):
    preset: str = "tiny"
    arch: str | None = Field(None, description="override the preset's architecture: modernbert, esm, bert, gpt2, "
                                               "llama (the preset then only gives the shape)")
    block_tokens: int | None = Field(None, ge=8, description="tokens per block incl. <cls>; default preset's context")
    overrides: dict[str, Any] = Field(default_factory=dict, description="transformers config fields to change")
    init_from: str | None = Field(None, description="continue from this local Hugging Face model folder "
                                                    "(safetensors only); its tokenizer is reused")


class PretrainBase(Schema):
    name: str = "run"
    run_dir: str | None = Field(None, description="default runs/NAME under the working directory")
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


class PretrainConfig(PretrainBase):
    """DNA (the default modality); cells and text have their own schemas, picked by `modality`."""

    modality: Literal["dna"] = "dna"
    data: DnaDataConfig
    tokenizer: KmerTokenizerConfig = Field(default_factory=KmerTokenizerConfig)


@dataclass
class Prepared:
    tokenizer: Any  # has .save(path), .vocab_size and the ids of its specials
    objective: Objective  # wraps the model
    data: TrainData
    meta: dict[str, Any]


@dataclass(frozen=True)
class Modality:
    schema: str  # "module:Class" of the config schema
    prepare: str  # "module:function(cfg, preset, block) -> Prepared"


MODALITIES: dict[str, Modality] = {
    "dna": Modality("biofm.pretrain:PretrainConfig", "biofm.dna.pretrain:prepare"),
    "cells": Modality("biofm.cells.pretrain:CellPretrainConfig", "biofm.cells.pretrain:prepare"),
    "text": Modality("biofm.text.pretrain:TextPretrainConfig", "biofm.text.pretrain:prepare"),
}


def _resolve(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def schema_for(modality: str) -> type[PretrainBase]:
    if modality not in MODALITIES:
        raise BiofmError(f"modality {modality!r}: choose one of {', '.join(MODALITIES)}")
    return _resolve(MODALITIES[modality].schema)


def new_model(cfg: PretrainBase, preset: Preset, tok: Any, block: int, *, type_vocab_size: int = 2,
              default_arch: str | None = None) -> PreTrainedModel:
    """A fresh model of the preset's shape for this tokenizer, or the `model.init_from` checkpoint."""
    if cfg.model.init_from:
        from biofm.models.load import load_pretrained

        model = load_pretrained(cfg.model.init_from)
        model.config.biofm_modality = cfg.modality
        if model.config.vocab_size < tok.vocab_size:
            raise BiofmError(f"{cfg.model.init_from}: the model has {model.config.vocab_size} token rows but the "
                             f"tokenizer {tok.vocab_size}; continue with the model's own tokenizer")
        return model
    model_cfg = build_config(preset, vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                             cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=max(block, preset.max_len),
                             overrides=cfg.model.overrides, arch=cfg.model.arch or default_arch,
                             type_vocab_size=type_vocab_size)
    model = build_model(model_cfg, seed=cfg.seed)
    model.config.biofm_modality = cfg.modality  # saved in config.json: evaluate picks loaders by it
    return model


def run(cfg: PretrainBase, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
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
        prepared = _resolve(MODALITIES[cfg.modality].prepare)(cfg, preset, block)
    tok = prepared.tokenizer
    if dist.is_main_process:
        with atomic_path(run_dir / "tokenizer", is_dir=True) as tmp:
            tok.save(tmp)
        write_json(run_dir / "data.json", prepared.meta)
    trainer = Trainer(prepared.objective, cfg.train, prepared.data, run_dir, seed=cfg.seed, progress=progress)
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
    state = trainer.full_state()  # a collective under FSDP: every rank takes part
    if trainer.is_main:
        with atomic_path(run_dir / "model", is_dir=True) as tmp:
            trainer.save_model(tmp, state)
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



def load_config(path: str | Path | None, overrides: list[str]) -> PretrainBase:
    """Read a pretraining YAML; its `modality` (default dna) picks the schema."""
    data = cfgmod.read_yaml(path) if path is not None else {}
    data = cfgmod.apply_overrides(data, overrides)
    return build_config_for(data, str(path) if path is not None else "config")


def build_config_for(data: dict[str, Any], source: str) -> PretrainBase:
    modality = data.get("modality", "dna")
    if modality not in MODALITIES:
        raise BiofmError(f"{source}: modality {modality!r}: choose one of {', '.join(MODALITIES)}")
    return cfgmod.build(schema_for(modality), data, source)


__all__ = [
    "MODALITIES",
    "Prepared",
    "PretrainBase",
    "PretrainConfig",
    "build_config_for",
    "finish_run",
    "load_config",
    "new_model",
    "run",
]
