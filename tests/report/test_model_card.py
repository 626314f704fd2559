"""RUN/model/README.md: a model card with Hugging Face front matter, written from the run folder."""

import json

import pytest
import yaml

from biofm.cli import main


def test_pretraining_writes_a_model_card_that_matches_the_run(tmp_path):
    seq = "ATGGCGTTAACC" * 400
    (tmp_path / "g.fa").write_text(f">chr1\n{seq}\n>chr2\n{seq[::-1]}\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "name": "card", "run_dir": str(tmp_path / "run"),
        "data": {"fasta": [str(tmp_path / "g.fa")], "cache_dir": str(tmp_path / "cache"), "region_bp": 2000,
                 "val_fraction": 0.25},
        "tokenizer": {"k": 1}, "model": {"preset": "tiny", "block_tokens": 64},
        "train": {"steps": 4, "global_batch_tokens": 512, "micro_batch_size": 8, "eval_every": 2,
                  "checkpoint_every": 2, "warmup_steps": 1}}))
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", str(tmp_path / "c.yaml")])
    assert exc.value.code in (0, None)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and front["pipeline_tag"] == "fill-mask"
    assert {"biofm", "dna", "masked-lm"} <= set(front["tags"]) and front["license"] == "other"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert f"Verdict: **{summary['health']['verdict']}**" in card
    assert f"{summary['params']:,} parameters" in card
    assert "AutoModelForMaskedLM.from_pretrained(" in card and "trust_remote_code" not in card
    assert "## Evaluation" not in card  # no RUN/eval yet
