"""Text demo settings: a tiny GPT-2 on PubMed abstracts, samples, perplexity, PubMedQA.

The corpus (the registered dataset `pubmed-abstracts`) leaves out every abstract that is in
PubMedQA, so the probe on PubMedQA's questions + abstracts sees no text the model was pretrained on.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

PROMPTS = ("The patient was diagnosed with", "In this study, we", "Mutations in the BRCA1 gene")


def pretrain_settings(out: Path) -> dict[str, Any]:
    return {
        "name": out.name,
        "run_dir": str(out),
        "seed": 0,
        "modality": "text",
        "data": {"paths": ["dataset:pubmed-abstracts"], "val_fraction": 0.05},
        "tokenizer": {"vocab_size": 4096},
        "model": {"preset": "gpt2-tiny", "block_tokens": 128},
        "train": {
            "steps": 250, "global_batch_tokens": 8192, "micro_batch_size": 32, "lr": 3e-3,
            "schedule": "cosine", "warmup_steps": 25, "min_lr_ratio": 0.1, "log_every": 10,
            "eval_every": 50, "eval_max_blocks": 512, "checkpoint_every": 125, "keep_checkpoints": 1,
        },
    }


def eval_settings(run_dir: Path) -> dict[str, Any]:
    """PubMedQA (question + abstract → yes/no/maybe): probes on frozen embeddings against TF-IDF +
    logistic regression, 5 folds. Fine-tuning is left to `biofm evaluate` (minutes more per method)."""
    return {
        "model": str(run_dir / "model"),
        "tasks": ["pubmedqa"],
        "out": str(run_dir / "eval"),
        "folds": 5,
        "probes": {"kinds": ["logreg"], "mlp_hidden": [64]},
        "finetune": {"methods": []},
    }


def after_pretraining(run_dir: Path) -> list[tuple[str, str]]:
    """Print and report a sampled continuation of each prompt (seeded: the same text every run)."""
    from rich.console import Console

    from biofm.use.generate import generate

    console = Console()
    rows = []
    for prompt in PROMPTS:
        text = generate(run_dir / "model", prompt, max_new_tokens=40, temperature=0.8, top_k=50, top_p=0.95,
                        seed=0)[0]
        console.print(f"[bold]{prompt}[/bold]{text[len(prompt):]}", highlight=False)
        rows.append(f"<li><b>{html.escape(prompt)}</b>{html.escape(text[len(prompt):])}</li>")
    note = "<p>temperature 0.8, top-k 50, top-p 0.95, seed 0, 40 new tokens</p>"
    return [("Generated continuations", note + "<ul>" + "".join(rows) + "</ul>")]
