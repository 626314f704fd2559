"""`biofm pretrain`: config → tokenizer → blocks → model → shared trainer → run folder.

The modality part (its config schema; reading, tokenising, blocks) comes from the modality plug-in
named by the config's `modality` (default dna; see `biofm.modality`); everything after it —
trainer, health verdict, plots, report — is shared.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from transformers import PreTrainedModel

from biofm import config as cfgmod
from biofm.config import Schema
from biofm.errors import BiofmError
from biofm.health.doctor import diagnose
from biofm.health.plots import plot_loss
from biofm.io.atomic import atomic_path, write_json
from biofm.modality import get as get_modality
from biofm.modality import names as modality_names
from biofm.models.presets import Preset, build_config, build_model, get_preset
from biofm.report.html import write_report
from biofm.train.config import TrainConfig
from biofm.train.loop import TrainData, Trainer, TrainingDiverged, is_disk_full
from biofm.train.objectives import Objective
from biofm.train.run_folder import RunFolder, config_changes, fingerprints, input_paths, refused_changes


class ModelConfig(Schema):
    preset: str = "tiny"
    arch: str | None = Field(None, description="override the preset's architecture: modernbert, esm, bert, gpt2, "
                                               "llama (the preset then only gives the shape)")
    block_tokens: int | None = Field(None, ge=8, description="tokens per block incl. <cls>; default preset's context")
    overrides: dict[str, Any] = Field(default_factory=dict, description="transformers config fields to change")
    init_from: str | None = Field(None, description="continue from this local Hugging Face model folder "
                                                    "(safetensors only); its tokenizer is reused")


class PretrainBase(Schema):
    name: str = Field("run", description="the run's name: a folder name (runs/NAME), not a path")
    run_dir: str | None = Field(None, description="default runs/NAME under the working directory")
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # `name=` once made runs/ itself the run folder, and `--overwrite` then deleted every run in it
        if not v.strip() or v.strip(".") == "" or any(c in v for c in "/\\") or v != v.strip():
            raise ValueError(f"name {v!r} must be a plain folder name (no slashes, not empty, not . or ..); "
                             "use run_dir for a path")
        return v

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


@dataclass
class Prepared:
    tokenizer: Any  # has .save(path), .vocab_size and the ids of its specials
    objective: Objective  # wraps the model
    data: TrainData
    meta: dict[str, Any]


def schema_for(modality: str) -> type[PretrainBase]:
    return get_modality(modality).resolve(get_modality(modality).pretrain_schema)


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


def run(cfg: PretrainBase, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
        allow_changes: list[str] | None = None) -> Path:
    """Pretrain into the run folder. Nothing in an existing run is written before the new start is known
    to be sound: the folder may be deleted (`--overwrite`, see `RunFolder.refuse_delete`), the config is
    checked against the stored one (`--resume`), and `config.yaml` is rewritten only once training can
    start. One process per run (a lock)."""
    import torch
    from accelerate import PartialState

    # joins the process group under torchrun / accelerate launch (gloo on CPU); a no-op otherwise
    dist = PartialState(cpu=not torch.cuda.is_available())
    run_dir = cfg.resolved_run_dir()
    folder = RunFolder(run_dir)
    inputs = input_paths(cfg.model_dump(mode="json", exclude={"name", "run_dir"}))
    restart = _plan_start(folder, cfg, inputs, resume=resume, overwrite=overwrite, allow=allow_changes or [],
                          say=dist.is_main_process)
    resume = resume and not restart
    preset = get_preset(cfg.model.preset)
    block = cfg.model.block_tokens or preset.max_len
    if block > preset.max_len and "max_position_embeddings" not in cfg.model.overrides:
        raise BiofmError(f"model.block_tokens={block} exceeds the {preset.name} preset's context of {preset.max_len}")
    dist.wait_for_everyone()  # every rank has checked the folder before rank 0 touches it
    with folder.locked() if dist.is_main_process else contextlib.nullcontext():
        if dist.is_main_process:
            if restart:
                folder.clear()
            if not folder.is_ours():
                folder.create({})
            folder.remove_stale_temporaries()
        with dist.main_process_first():  # rank 0 tokenises; the others then find the cache
            modality = get_modality(cfg.modality)
            prepared = modality.resolve(modality.prepare)(cfg, preset, block)
        tok = prepared.tokenizer
        trainer = Trainer(prepared.objective, cfg.train, prepared.data, run_dir, seed=cfg.seed, progress=progress)
        if resume:
            trainer.resume_latest()
        if dist.is_main_process:  # the start is sound: now the run's records may change
            folder.record(fingerprints(inputs))
            cfgmod.save(cfg, run_dir / "config.yaml")
            with atomic_path(run_dir / "tokenizer", is_dir=True) as tmp:
                tok.save(tmp)
            write_json(run_dir / "data.json", prepared.meta)
        return _train(cfg, trainer, prepared, preset, run_dir, resume)


def _plan_start(folder: RunFolder, cfg: PretrainBase, inputs: list[Path], *, resume: bool, overwrite: bool,
                allow: list[str], say: bool) -> bool:
    """Check the folder and the flags; True when the run must start over (the folder is then deleted)."""
    run_dir = folder.path
    if resume and overwrite:
        raise BiofmError(f"{run_dir}: --resume continues a run and --overwrite starts it over; choose one")
    if folder.is_empty():
        if resume:
            raise BiofmError(f"{run_dir}: --resume given but there is no run here to continue")
        return False
    has_checkpoint = any((p / "trainer_state.json").is_file() for p in (run_dir / "checkpoints").glob("step-*"))
    if folder.is_ours() and not has_checkpoint and not overwrite:
        # killed before its first checkpoint: nothing to resume and nothing worth keeping
        if say:
            print(f"{run_dir}: no complete checkpoint yet (the run stopped before its first one); starting over",
                  file=sys.stderr)
        overwrite = True
    if overwrite:
        why = folder.refuse_delete(inputs)
        if why:
            raise BiofmError(f"{run_dir}: --overwrite refused: {why}")
        return True
    if not resume:
        raise BiofmError(f"{run_dir}: run folder exists; pass --resume to continue it or --overwrite to start over")
    stored_path = run_dir / "config.yaml"
    if not stored_path.is_file():
        raise BiofmError(f"{run_dir}: --resume given but the run has no config.yaml; is this a biofm run folder?")
    stored = build_config_for(cfgmod.read_yaml(stored_path), str(stored_path))
    changes = config_changes(stored.model_dump(mode="json", exclude={"name", "run_dir"}),
                             cfg.model_dump(mode="json", exclude={"name", "run_dir"}))
    refused = refused_changes(changes, allow)
    if refused:
        raise BiofmError(f"{stored_path}: --resume with changed {', '.join(refused)}; the checkpoint was trained "
                         f"with the stored values. Start a new run, or pass --allow-changes {' '.join(refused)} "
                         "if the change is intended")
    recorded = folder.recorded_inputs()
    if recorded and "data" not in allow:
        now = fingerprints([p for p in inputs if str(p.resolve()) in recorded or p.is_dir()])
        changed = [p for p, sha in now.items() if p in recorded and recorded[p] != sha]
        if changed:
            raise BiofmError(f"{changed[0]}: changed since this run started (its content differs); --resume would "
                             "train on other data. Restore it, start a new run, or pass --allow-changes data")
    if say and changes:
        print(f"{run_dir}: resuming with changed {', '.join(changes)}", file=sys.stderr)
    return False


def _train(cfg: PretrainBase, trainer: Trainer, prepared: Prepared, preset: Preset, run_dir: Path,
           resumed: bool) -> Path:
    tok = prepared.tokenizer
    try:
        summary = trainer.fit(resumed=resumed)
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
        try:
            with atomic_path(run_dir / "model", is_dir=True) as tmp:
                trainer.save_model(tmp, state)
                tok.save(tmp)
        except (OSError, RuntimeError) as exc:
            if not is_disk_full(exc):
                raise
            raise BiofmError(f"{run_dir / 'model'}: no space to write the final model (disk full or file-size "
                             "limit); the last checkpoint is intact. Free space, then run again with --resume"
                             ) from None
        write_json(run_dir / "summary.json", summary)
        finish_run(run_dir)
    trainer.acc.wait_for_everyone()
    return run_dir


def finish_run(run_dir: Path, sections: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Plot, diagnose and write the report and the model card (RUN/model/README.md) from what is in the
    run folder; returns the diagnosis."""
    from biofm.health.doctor import load_run
    from biofm.report.model_card import write_model_card

    summary, rows = load_run(run_dir)
    plot_loss(rows, summary, run_dir / "loss.png")
    diag = diagnose(summary, rows).to_dict()
    if summary:
        summary["health"] = diag
        write_json(run_dir / "summary.json", summary)
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else ""
    write_report(run_dir, summary, diag, config_text, sections)
    if summary.get("status") == "finished":
        write_model_card(run_dir, summary, diag)
    return diag


def load_config(path: str | Path | None, overrides: list[str]) -> PretrainBase:
    """Read a pretraining YAML; its `modality` (default dna) picks the schema."""
    data = cfgmod.read_yaml(path) if path is not None else {}
    data = cfgmod.apply_overrides(data, overrides)
    return build_config_for(data, str(path) if path is not None else "config")


def build_config_for(data: dict[str, Any], source: str) -> PretrainBase:
    modality = data.get("modality", "dna")
    if modality not in modality_names():
        raise BiofmError(f"{source}: modality {modality!r}: choose one of {', '.join(modality_names())}")
    return cfgmod.build(schema_for(modality), data, source)


__all__ = [
    "Prepared",
    "PretrainBase",
    "build_config_for",
    "finish_run",
    "load_config",
    "new_model",
    "run",
]
