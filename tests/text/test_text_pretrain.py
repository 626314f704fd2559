"""Text pretraining end to end: GPT-2 from scratch, exact perplexity, continued pretraining, generation, fill-mask."""

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from biofm.cli import main as _main


def main(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _main(args)
    assert exit_.value.code in (0, None)

BIN = Path(sys.executable).parent
WORDS = ("the", "cell", "gene", "protein", "expression", "tumour", "patient", "cohort", "mutation", "receptor",
         "binding", "pathway", "increased", "reduced", "significantly", "observed", "kinase", "inhibitor",
         "response", "treatment", "clinical")


def _corpus(path: Path, n: int = 120, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(20, 60))]
            fh.write(json.dumps({"text": f"Study {i} [1, 2]: " + " ".join(words) + "."}) + "\n")


def _config(tmp: Path, name: str, **train) -> Path:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": name, "run_dir": str(tmp / name), "modality": "text",
        "data": {"paths": [str(tmp / "corpus.jsonl")], "cache_dir": str(tmp / "cache"), "val_fraction": 0.2},
        "tokenizer": {"vocab_size": 300},
        "model": {"preset": "gpt2-tiny", "block_tokens": 32},
        "train": {"steps": 6, "global_batch_tokens": 256, "micro_batch_size": 8, "eval_every": 3, "log_every": 1,
                  "checkpoint_every": 3, "warmup_steps": 1, "lr": 3e-3, "eval_max_blocks": 37, **train},
    }))
    return cfg


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    _corpus(tmp / "corpus.jsonl")
    main(["pretrain", str(_config(tmp, "one"))])
    return tmp


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_and_perplexity_is_exp_of_total_nll(tmp):
    run = tmp / "one"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["perplexity"] == pytest.approx(math.exp(summary["final_eval_loss"]), rel=1e-9)
    assert summary["baseline_unigram"] < summary["baseline_uniform"]
    # brute force: every held-out block in one pass, total NLL / total predicted tokens
    from biofm.data.blocks import open_blocks

    data = json.loads((run / "data.json").read_text())
    val = np.asarray(open_blocks(Path(data["dataset"]) / "val.arrow")[:37]).astype(np.int64)
    model = AutoModelForCausalLM.from_pretrained(run / "model", use_safetensors=True)
    ids = torch.from_numpy(val)
    pad = model.config.pad_token_id
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=(ids != pad).long()).logits[:, :-1].float()
    targets = ids[:, 1:]
    keep = targets != pad
    allowed = torch.zeros(logits.shape[-1], dtype=torch.bool)
    tok_specials = json.loads((run / "tokenizer" / "tokenizer_config.json").read_text())
    assert tok_specials  # the tokenizer folder is a Hugging Face one
    allowed[: model.config.vocab_size] = True
    # targets are real tokens and <|endoftext|>; other specials and padding rows get no probability
    from biofm.text.tokenizer import TextTokenizer

    tok = TextTokenizer.load(run / "tokenizer")
    blocked = [i for i in tok.special_ids if i != tok.eos_id] + list(range(tok.vocab_size, logits.shape[-1]))
    allowed[blocked] = False
    nll = torch.nn.functional.cross_entropy(logits[keep].masked_fill(~allowed, float("-inf")), targets[keep],
                                            reduction="sum")
    assert float(nll) / int(keep.sum()) == pytest.approx(summary["final_eval_loss"], rel=1e-4)


def test_eval_loss_does_not_depend_on_batch_size(tmp):
    """Same global batch, micro-batch 2 instead of 8 (so 4x accumulation and smaller eval batches)."""
    main(["pretrain", str(_config(tmp, "small_micro", micro_batch_size=2))])
    a, b = _rows(tmp / "one"), _rows(tmp / "small_micro")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
    assert [r["eval_loss"] for r in a if "eval_loss" in r] == pytest.approx(
        [r["eval_loss"] for r in b if "eval_loss" in r], rel=1e-5)


def test_two_processes_give_the_same_perplexity(tmp):
    env = {**os.environ, "BIOFM_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29541", "-m", "biofm",
                           "pretrain", str(_config(tmp, "two"))], env=env, capture_output=True, text=True,
                          cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((tmp / r / "summary.json").read_text()) for r in ("one", "two"))
    assert two["world_size"] == 2
    assert two["perplexity"] == pytest.approx(one["perplexity"], rel=1e-5)
    assert [r["loss"] for r in _rows(tmp / "two")] == pytest.approx([r["loss"] for r in _rows(tmp / "one")],
                                                                    rel=1e-4)


def test_continue_from_a_local_checkpoint_and_generate(tmp, capsys):
    main(["pretrain", str(_config(tmp, "cont", steps=2)), "--set", f"model.init_from={tmp / 'one' / 'model'}"])
    first = json.loads((tmp / "one" / "summary.json").read_text())
    cont = json.loads((tmp / "cont" / "summary.json").read_text())
    # starts from the trained weights: already far below a fresh model's first loss
    assert _rows(tmp / "cont")[0]["loss"] < _rows(tmp / "one")[0]["loss"] - 0.3
    assert cont["params"] == first["params"]
    capsys.readouterr()
    outs = []
    for _ in range(2):
        main(["generate", "--model", str(tmp / "one"), "--prompt", "the cell", "--max-new-tokens", "8",
              "--seed", "3"])
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0].startswith("the cell")


def test_masked_text_model_and_fill_mask(tmp, capsys):
    main(["pretrain", str(_config(tmp, "bert", steps=3)), "--set", "model.preset=bert-tiny"])
    summary = json.loads((tmp / "bert" / "summary.json").read_text())
    assert summary["objective"]["main"] == "mlm" and "perplexity" not in summary
    capsys.readouterr()
    main(["fill-mask", "--model", str(tmp / "bert"), "--sequence", "the cell <mask> expression", "--top-k", "3"])
    out = capsys.readouterr().out
    assert out.startswith("<mask> #1:") and out.count(".") >= 3


def test_evaluate_text_task_with_probes_lora_and_tfidf(tmp):
    rng = random.Random(1)
    lines = ["text\tlabel"]
    for i in range(40):
        label = i % 2
        word = "kinase" if label else "receptor"
        words = [rng.choice(WORDS) for _ in range(12)] + [word] * 3
        rng.shuffle(words)
        lines.append(" ".join(words) + f"\t{'yes' if label else 'no'}")
    (tmp / "cls.tsv").write_text("\n".join(lines) + "\n")
    main(["evaluate", "--model", str(tmp / "one"), "--task", str(tmp / "cls.tsv"), "--out", str(tmp / "ev"),
          "--folds", "2", "--set", "finetune.methods=[lora]", "--set", "finetune.epochs=1",
          "--set", "probes.kinds=[logreg]"])
    results = json.loads((tmp / "ev" / "results.json").read_text())
    task = results["tasks"][0]
    names = {m["name"] for m in task["methods"]}
    assert task["modality"] == "text"
    assert {"probe-logreg-mean", "probe-logreg-last", "finetune-lora", "baseline-tfidf_logreg"} <= names
    tfidf = next(m for m in task["methods"] if m["name"] == "baseline-tfidf_logreg")
    assert tfidf["summary"]["accuracy"]["mean"] > 0.8  # the label word is a give-away
    assert task["verdict"] is not None
