"""A tiny pretrain -> doctor -> evaluate run on synthetic paired cells, and the checkpoint's plain loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def test_pretrain_doctor_evaluate(tmp_path: Path, h5mu_protein: Path) -> None:
    from transformers import AutoModel

    from biofm.eval.evaluate import EvaluateConfig, run_evaluation
    from biofm.health.doctor import diagnose, load_run
    from biofm.pretraining import build_config_for, run

    cfg = build_config_for({
        "name": "mo", "run_dir": str(tmp_path / "run"), "modality": "multiome",
        "data": {"h5mu": str(h5mu_protein), "modalities": {"rna": "rna", "protein": "adt"}, "val_fraction": 0.25},
        "tokens": {"n_bins": 5, "max_rna_tokens": 32, "cross_queries": 16},
        "model": {"preset": "tiny", "overrides": {"num_hidden_layers": 1}},
        "train": {"steps": 40, "global_batch_tokens": 1024, "micro_batch_size": 16, "lr": 2e-3, "warmup_steps": 4,
                  "log_every": 10, "eval_every": 20, "checkpoint_every": 40, "mask_prob": 0.3}}, "test")
    run_dir = run(cfg, progress=False)
    summary, rows = load_run(run_dir)
    diag = diagnose(summary, rows)
    assert summary["baseline_reference"] == "per_feature" and diag.verdict in ("learning", "plateaued")
    # every objective and modality on its own targets against its own baseline, summed by the trainer
    parts = summary["components"]
    assert {"masked_rna", "masked_protein", "cross_rna", "cross_protein", "contrastive"} <= set(parts)
    assert parts["contrastive"]["baseline"] > 0 and parts["cross_rna"]["targets"] > 0
    acc = summary["metrics"]["retrieval_accuracy"]
    assert 0 < acc["chance"] < 1 and acc["items"] == parts["contrastive"]["targets"]
    assert any(x.startswith("objective cross_rna:") for x in diag.facts)
    assert any(x.startswith("retrieval accuracy") and "against chance" in x for x in diag.facts)
    # the encoder loads as a stock BertModel, without remote code
    m = AutoModel.from_pretrained(run_dir / "model", trust_remote_code=False)
    assert type(m).__name__ == "BertModel" and m.config.type_vocab_size == 4

    # the task reads the same file; the 20 held-out cells score cross-modal prediction
    task_yaml = tmp_path / "task.yaml"
    task_yaml.write_text(f"name: synth\nmodality: multiome\nh5mu: {h5mu_protein}\n"
                         "modalities: {rna: rna, protein: adt}\nlabel_column: cell_type\n")
    ecfg = EvaluateConfig.model_validate({"model": str(run_dir / "model"), "tasks": [str(task_yaml)],
                                          "out": str(tmp_path / "eval"), "folds": 3, "control": False,
                                          "probes": {"kinds": ["logreg"]},
                                          "multiome_baselines": {"n_pcs": 5, "n_hvg": 20, "knn_k": 5}})
    out = run_evaluation(ecfg)
    res = json.loads((out / "results.json").read_text())["tasks"][0]
    names = {m["name"] for m in res["methods"]}
    assert {"probe-knn-joint", "probe-knn-rna-only", "probe-knn-protein-only", "baseline-joint-logreg",
            "baseline-rna-pca-logreg", "baseline-other-logreg"} <= names
    assert res["verdict"]["outcome"] in ("beats", "matches", "loses")
    table = next(t for t in res["tables"] if t["name"] == "cross_modal")["rows"]
    directions = {r["direction"] for r in table}
    assert directions == {"rna -> protein", "protein -> rna"}
    model_rows = [r for r in table if r["method"] == "biofm"]
    assert all(r["cells"] == 20 and "verdict" in r for r in model_rows)
    # the two groups drive both modalities: the learned prediction correlates across cells
    assert np.nanmax([r["per_feature_pearson"] for r in model_rows]) > 0.3
