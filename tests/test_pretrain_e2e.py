"""A tiny pretraining run through the CLI, as a user would do it, and everything it leaves behind."""

import json
import random

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForMaskedLM, AutoTokenizer

from biofm.cli import main
from biofm.models.mlm import masked_logits


def _genome(path, n_records=3, length=6000, seed=0):
    rng = random.Random(seed)
    motif = "ATGGCGTTAACC"
    with open(path, "w") as fh:
        for r in range(n_records):
            seq = "".join(motif if rng.random() < 0.5 else rng.choice("ACGT") * 3 for _ in range(length // 8))
            fh.write(f">chr{r} test record\n")
            for i in range(0, len(seq), 70):
                fh.write(seq[i:i + 70] + "\n")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    _genome(tmp / "g.fa")
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "e2e", "run_dir": str(tmp / "run"),
        "data": {"fasta": [str(tmp / "g.fa")], "cache_dir": str(tmp / "cache"), "region_bp": 2000,
                 "val_fraction": 0.2},
        "tokenizer": {"k": 2},
        "model": {"preset": "tiny", "block_tokens": 64},
        "train": {"steps": 8, "global_batch_tokens": 512, "micro_batch_size": 4, "eval_every": 4,
                  "log_every": 2, "checkpoint_every": 4, "warmup_steps": 2},
    }))
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", str(cfg)])
    assert exc.value.code in (0, None)
    return tmp / "run"


def test_run_folder_contents(run_dir):
    for rel in ["config.yaml", "tokenizer/tokenizer.json", "model/config.json", "model/model.safetensors",
                "metrics.jsonl", "summary.json", "loss.png", "report.html", "checkpoints/step-8"]:
        assert (run_dir / rel).exists(), rel
    assert list((run_dir / "tensorboard").iterdir())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for key in ["step", "tokens_seen", "loss", "lr", "grad_norm", "tokens_per_s"]:
        assert all(key in r for r in rows), key
    assert [r["step"] for r in rows if "eval_loss" in r] == [4, 8]
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ["params", "final_eval_loss", "baseline_uniform", "baseline_unigram", "tokens_per_s",
                "final_eval_bits_per_base", "baseline_unigram_bits_per_base"]:
        assert key in summary
    assert summary["baseline_unigram"] <= summary["baseline_uniform"]
    assert summary["baseline_uniform"] == pytest.approx(np.log(16 + 5))  # 2-mers + single A C G T N
    html = (run_dir / "report.html").read_text()
    assert "unigram" in html and "data:image/png;base64" in html and "tokens_per_s" in html


def test_resolved_config_has_every_default_and_reruns(run_dir, capsys):
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["weight_decay"] == 0.01 and cfg["data"]["max_n_fraction"] == 0.1
    assert cfg["model"]["overrides"] == {} and cfg["tokenizer"]["k"] == 2
    before = [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", str(run_dir / "config.yaml")])
    assert exc.value.code in (0, None)
    after = [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert after == pytest.approx(before, rel=1e-5)  # same config, same seed: same run


def test_saved_model_loads_with_stock_transformers_and_gives_training_logits(run_dir):
    model = AutoModelForMaskedLM.from_pretrained(run_dir / "model")  # no trust_remote_code
    tok = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    ids = tok(["ACGTACGTAAGGCCTT", "TTGACNNACGT"], padding=True, return_tensors="pt")
    sel = ids["attention_mask"].bool()
    full = model(**ids).logits[sel]
    training_path = masked_logits(model, ids["input_ids"], ids["attention_mask"], sel)
    torch.testing.assert_close(full, training_path)
    # and the checkpoint written during training holds the same weights as the final model
    ckpt = AutoModelForMaskedLM.from_pretrained(run_dir / "checkpoints" / "step-8" / "model")
    torch.testing.assert_close(ckpt(**ids).logits, model(**ids).logits)


def test_doctor_info_embed_fill_mask(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["doctor", str(run_dir)])
    out = capsys.readouterr().out
    assert "verdict:" in out and exc.value.code in (0, 1)
    with pytest.raises(SystemExit):
        main(["info", str(run_dir / "model")])
    out = capsys.readouterr().out
    n_params = json.loads((run_dir / "summary.json").read_text())["params"]
    assert f"{n_params:,}" in out and "layers.0.attn.Wqkv.weight" in out
    fa = tmp_path / "q.fa"
    fa.write_text(">a\nACGTACGTTT\n>b\nGGGCCCAAATTT\n")
    with pytest.raises(SystemExit):
        main(["embed", "--model", str(run_dir), "--input", str(fa), "--out", str(tmp_path / "e.npy")])
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape[:2] == (2, 3)  # 2 sequences × (embeddings + 2 layers)
    with pytest.raises(SystemExit):
        main(["fill-mask", "--model", str(run_dir), "--sequence", "ACGT<mask>GTAC", "--top-k", "3"])
    out = capsys.readouterr().out
    assert out.count("<mask> #1") == 1


def test_resume_of_finished_run_is_a_no_op(run_dir, capsys):
    rows = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", str(run_dir / "config.yaml"), "--resume"])
    assert exc.value.code in (0, None)
    assert (run_dir / "metrics.jsonl").read_text() == rows


def test_existing_run_folder_is_not_overwritten_silently(run_dir, tmp_path, capsys):
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    other = tmp_path / "c.yaml"
    other.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", str(other)])
    assert exc.value.code == 2 and "--resume" in capsys.readouterr().err
