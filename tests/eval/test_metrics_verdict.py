import math

import numpy as np
import pytest

from biofm.errors import BiofmError
from biofm.eval.folds import make_folds, validation_split
from biofm.eval.metrics import classification_metrics, regression_metrics, summarise
from biofm.eval.types import FoldPrediction, Task
from biofm.eval.verdict import compare, count_sentence, paired, task_verdict


def test_classification_metrics_hand_checked():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    m = classification_metrics(y, pred, proba, 2)
    assert m["accuracy"] == 0.75
    # MCC = (TP*TN - FP*FN) / sqrt(...) = (2*1 - 1*0) / sqrt(3*2*1*2)
    assert m["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert m["auroc"] == 1.0 and m["auprc"] == pytest.approx(1.0)


def test_multiclass_and_regression_metrics():
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[y] * 0.7 + 0.1
    m = classification_metrics(y, y, proba, 3)
    assert m["mcc"] == pytest.approx(1.0) and m["macro_f1"] == pytest.approx(1.0) and m["auroc"] == 1.0
    r = regression_metrics(np.array([1.0, 2, 3, 4]), np.array([1.1, 1.9, 3.2, 3.9]))
    assert r["pearson"] > 0.99 and r["spearman"] == pytest.approx(1.0) and r["r2"] > 0.97


def test_summary_uses_sample_std():
    s = summarise([{"mcc": 0.5}, {"mcc": 0.7}])
    assert s["mcc"]["mean"] == pytest.approx(0.6) and s["mcc"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_nt_rule():
    assert compare(0.8, 0.01, 0.7, 0.01) == "beats"
    assert compare(0.72, 0.01, 0.7, 0.01) == "matches"  # intervals overlap
    assert compare(0.6, 0.01, 0.7, 0.01) == "loses"
    methods = [_method("probe-a", "probe", [0.79, 0.8, 0.81]), _method("finetune-b", "finetune", [0.69, 0.7, 0.71]),
               _method("baseline-c", "baseline", [0.70, 0.75, 0.80]), _method("baseline-d", "baseline", [0.5] * 3)]
    v = task_verdict("t", methods, "mcc")
    assert (v.model_method, v.baseline_method, v.nt_outcome) == ("probe-a", "baseline-c", "matches")
    assert count_sentence(["beats", "matches", "matches"]) == "beats 1, matches 2, loses 0 of 3"


def _method(name: str, kind: str, scores: list[float]) -> dict:
    return {"name": name, "kind": kind, "per_fold": [{"mcc": x} for x in scores],
            "summary": {"mcc": {"mean": float(np.mean(scores)), "std": float(np.std(scores, ddof=1))}}}


def test_paired_verdict_sees_a_loss_that_nt_rule_calls_a_match():
    # a shared hard fold spreads both methods; the model is 0.05 below on every fold
    base = [0.30, 0.50, 0.70, 0.40, 0.60]
    model = [b - 0.05 + e for b, e in zip(base, [0.01, -0.01, 0.0, 0.005, -0.005], strict=True)]
    v = task_verdict("t", [_method("probe-a", "probe", model), _method("baseline-b", "baseline", base)], "mcc")
    assert v.nt_outcome == "matches" and v.outcome == "loses"
    assert v.paired["ci_high"] < 0 and v.paired["mean"] == pytest.approx(-0.05)
    assert v.paired["p_value"] == pytest.approx(0.0625)  # exact two-sided p for 5 same-sign differences
    assert "loses to the best baseline" in v.sentence() and "NT's ±2 s.d. rule would say it matches" in v.sentence()


def test_paired_verdict_refuses_a_win_that_rests_on_anti_correlated_folds():
    # NT's intervals separate, yet the per-fold differences vary so much over 3 folds that 0 stays plausible
    model, base = [0.85, 0.95, 1.05], [0.6, 0.5, 0.4]
    assert compare(float(np.mean(model)), 0.1, float(np.mean(base)), 0.1) == "beats"
    v = task_verdict("t", [_method("probe-a", "probe", model), _method("baseline-b", "baseline", base)], "mcc")
    assert (v.nt_outcome, v.outcome) == ("beats", "matches")
    # t(0.975, 2) = 4.303: half-width 4.303 * 0.2 / sqrt(3)
    assert v.paired["ci_low"] == pytest.approx(0.45 - 4.302653 * 0.2 / np.sqrt(3), abs=1e-5)
    assert "NT's ±2 s.d. rule would say it beats it" in v.sentence()


def test_paired_needs_two_finite_folds():
    assert paired([0.5], [0.4]) is None
    assert paired([0.5, float("nan")], [0.4, 0.3]) is None
    same = paired([0.5, 0.6], [0.5, 0.6])
    assert same.outcome == "matches" and same.mean == 0 and np.isnan(same.p_value)


def _task(labels, folds=None, kind="classification"):
    return Task("t", kind, ["A"] * len(labels), np.asarray(labels), ["a", "b"], folds=folds, source="t.yaml")


def test_folds_stratified_disjoint_and_seeded():
    labels = np.array([0] * 30 + [1] * 10)
    folds = make_folds(_task(labels), 5, seed=1)
    assert len(folds) == 5
    test = np.concatenate([te for _, te in folds])
    assert sorted(test) == list(range(40))
    for tr, te in folds:
        assert not set(tr) & set(te) and labels[te].sum() == 2
    again = make_folds(_task(labels), 5, seed=1)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again, strict=True))


def test_fold_column_and_errors():
    labels = np.array([0, 1] * 6)
    folds = make_folds(_task(labels, folds=np.array([0, 1, 2] * 4)), 10)
    assert len(folds) == 3
    with pytest.raises(BiofmError, match="rarest class"):
        make_folds(_task(np.array([0] * 20 + [1] * 3)), 10)


def test_validation_split_stays_inside_training_rows():
    labels = np.array([0, 1] * 50)
    tr = np.arange(0, 80)
    fit, val = validation_split(tr, _task(labels), 0.1, 0)
    assert set(fit) | set(val) == set(tr) and not set(fit) & set(val)


def test_fixed_split_verdict_bootstraps_test_rows_not_seeds():
    """Two deterministic methods on one test set differ by the same amount on every seed: seed-pairing
    would call a 2-row difference certain; the bootstrap over the 200 test rows does not."""
    from sklearn.metrics import matthews_corrcoef

    from biofm.eval.verdict import _mcc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    base_pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    model_pred = base_pred.copy()
    wrong = np.flatnonzero(model_pred != y)[:2]
    model_pred[wrong] = y[wrong]  # the model fixes two of the baseline's errors
    assert _mcc(y, model_pred, 3) == pytest.approx(matthews_corrcoef(y, model_pred))
    test = np.arange(200)

    def method(name, kind, pred):
        preds = [FoldPrediction(k, test, pred) for k in range(3)]  # the same predictions on every seed
        score = matthews_corrcoef(y, pred)
        return {"name": name, "kind": kind, "per_fold": [{"mcc": score}] * 3, "predictions": preds,
                "summary": {"mcc": {"mean": score, "std": 0.0}}}

    methods = [method("probe-a", "probe", model_pred), method("baseline-b", "baseline", base_pred)]
    v = task_verdict("t", methods, "mcc", "seeds", y)
    assert v.nt_outcome == "beats"  # zero spread over seeds: NT's rule is fooled
    assert v.outcome == "matches" and v.paired["unit"] == "test rows" and v.paired["seeds"] == 3
    assert v.paired["ci_low"] <= 0 < v.paired["ci_high"] and v.paired["test"] == "paired bootstrap"
    assert "200 test rows x 3 seeds, paired bootstrap p=" in v.sentence()
    # a large, consistent improvement is still found
    methods[0] = method("probe-a", "probe", y)
    assert task_verdict("t", methods, "mcc", "seeds", y).outcome == "beats"
