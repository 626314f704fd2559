"""Fine-tuning that cannot silently collapse: class weights, selection on the headline metric, the
single-class warning, and the cost estimate with its time budget."""

import numpy as np
import pytest

from biofm.dna.tokenizer import KmerTokenizer
from biofm.eval.evaluate import single_class_warnings
from biofm.eval.finetune import FinetuneConfig, balanced_weights, finetune, plan_budget
from biofm.eval.folds import make_folds
from biofm.eval.types import FoldPrediction, Task
from biofm.models.presets import build_config, build_model


def test_balanced_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 90 + [1] * 10 + [2] * 20)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert np.allclose(balanced_weights(y, 3).numpy(), expected)
    assert balanced_weights(np.array([0, 0, 2]), 3).tolist() == pytest.approx([0.75, 0.0, 1.5])


def test_plan_budget_cuts_epochs_then_rows_never_folds():
    assert plan_budget(100, 10, 5, 0.01, None) == (10, None, None)
    assert plan_budget(100, 10, 5, 0.01, 60) == (10, None, None)  # 50 s needed
    epochs, rows, note = plan_budget(100, 10, 5, 0.01, 20)  # 5 s per epoch
    assert (epochs, rows) == (4, None) and "epochs cut from 10 to 4" in note
    epochs, rows, note = plan_budget(1000, 10, 5, 0.01, 20)  # one epoch needs 50 s
    assert epochs == 1 and rows == 400 and "at most 400 training rows" in note


def test_single_class_warning_names_method_and_fold():
    task = Task("t", "classification", ["A"] * 6, np.array([0, 1, 0, 1, 0, 1]), ["neg", "pos"])
    preds = [FoldPrediction(0, np.array([0, 1, 2]), np.array([0, 0, 0])),
             FoldPrediction(1, np.array([3, 4, 5]), np.array([1, 0, 1]))]
    assert single_class_warnings("finetune-ia3", task, preds) == [
        "finetune-ia3 predicted only class 'neg' on fold 0 (3 test rows) (check finetune.lr_* and "
        "finetune.class_weight)"]
    one_class_test = [FoldPrediction(0, np.array([0, 2, 4]), np.array([0, 0, 0]))]
    assert single_class_warnings("probe", task, one_class_test) == []  # nothing else was possible


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """A motif task with 10% positives, and an untrained tiny model to fine-tune."""
    tmp = tmp_path_factory.mktemp("finetune")
    tok = KmerTokenizer(2)
    cfg = build_config("tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=64)
    build_model(cfg, seed=0).save_pretrained(tmp / "model")
    tok.save(tmp / "model")
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for i in range(200):
        s = list(rng.choice(list("ACGT"), 24))
        if i % 10 == 0:
            s[8:16] = list("GGGGGGGG")
        seqs.append("".join(s))
        labels.append(int(i % 10 == 0))
    task = Task("imbalanced", "classification", seqs, np.array(labels), ["neg", "pos"])
    from transformers import PreTrainedTokenizerFast

    hf_tok = PreTrainedTokenizerFast.from_pretrained(tmp / "model")
    return tmp / "model", hf_tok, task


def test_class_weights_keep_the_rare_class_alive(imbalanced):
    model_dir, tok, task = imbalanced
    folds = make_folds(task, 3, seed=0)
    messages: list[str] = []

    def run(weight: str):
        cfg = FinetuneConfig(methods=["lora"], epochs=2, patience=2, lr_lora=2e-3, class_weight=weight)
        return finetune(task, folds, 0, model_dir=model_dir, tokenizer=tok, method="lora", cfg=cfg, max_tokens=64,
                        log=messages.append)

    plain = run("none")
    balanced = run("balanced")
    # unweighted cross-entropy on 10% positives settles on the majority class on some fold ...
    assert single_class_warnings("finetune-lora", task, plain)
    # ... the balanced loss predicts both classes on every fold
    assert not single_class_warnings("finetune-lora", task, balanced)
    assert all(len(np.unique(p.pred)) == 2 for p in balanced)
    assert messages and messages[0].startswith("finetune-lora: estimated at most ")
    assert "x 2 epochs x 3 folds" in messages[0]


def test_time_budget_is_honoured_with_a_note(imbalanced):
    model_dir, tok, task = imbalanced
    folds = make_folds(task, 3, seed=0)
    messages: list[str] = []
    cfg = FinetuneConfig(methods=["ia3"], epochs=50, time_budget_s=0.5)
    preds = finetune(task, folds, 0, model_dir=model_dir, tokenizer=tok, method="ia3", cfg=cfg, max_tokens=64,
                     log=messages.append)
    assert len(preds) == 3 and sorted(np.concatenate([p.test_idx for p in preds]).tolist()) == list(range(200))
    assert any("time budget 0s" in m or "time budget 1s" in m for m in messages), messages
