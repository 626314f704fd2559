"""`biofm demo`: the whole lifecycle on shipped data, sized for a 2-core laptop CPU.

Context in DNA is thin at this scale: with 6-mer tokens a small model needs far more steps than a
CPU demo has before it beats the unigram baseline, while single-nucleotide tokens learn within
minutes. The demo therefore uses k=1 (the tokenizer default stays k=6, as Nucleotide Transformer).
"""

from __future__ import annotations

from pathlib import Path

from biofm import config as cfgmod
from biofm.pretrain import PretrainConfig, run

DATA = Path(__file__).parent / "demo_data"
GENOME = DATA / "ecoli_K12_MG1655_NC_000913.3.fna.gz"


def demo_config(out: Path, overrides: list[str] | None = None) -> PretrainConfig:
    data = {
        "name": out.name,
        "run_dir": str(out),
        "seed": 0,
        "data": {"fasta": [str(GENOME)], "split": "region", "val_fraction": 0.05, "region_bp": 50_000},
        "tokenizer": {"k": 1},
        "model": {"preset": "tiny", "block_tokens": 256},
        "train": {
            "steps": 300, "global_batch_tokens": 8192, "micro_batch_size": 32, "lr": 2e-3,
            "schedule": "cosine", "warmup_steps": 30, "min_lr_ratio": 0.1, "log_every": 10,
            "eval_every": 50, "eval_max_blocks": 256, "checkpoint_every": 100, "keep_checkpoints": 1,
        },
    }
    data = cfgmod.apply_overrides(data, overrides or [])
    return cfgmod.build(PretrainConfig, data, "demo config")


def run_demo(out: Path, overrides: list[str] | None = None) -> Path:
    cfg = demo_config(Path(out), overrides)
    return run(cfg, overwrite=True)
