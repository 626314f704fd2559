import math

from biofm.health.doctor import DIVERGING, LEARNING, NOT_BELOW, PLATEAUED, diagnose

BASE = {"baseline_uniform": math.log(4), "baseline_unigram": 1.38}


def _rows(evals, losses=None):
    rows = []
    for i, e in enumerate(evals):
        rows.append({"step": (i + 1) * 10, "loss": (losses or evals)[i], "eval_loss": e,
                     "baseline_unigram": 1.38, "baseline_uniform": math.log(4)})
    return rows


def test_learning():
    d = diagnose({**BASE, "eval_gain_se": 0.001}, _rows([1.38, 1.37, 1.36, 1.35, 1.34, 1.33]))
    assert d.verdict == LEARNING and d.ok


def test_not_below_unigram_gives_advice():
    d = diagnose({**BASE, "eval_gain_se": 0.001}, _rows([1.40, 1.39, 1.385, 1.381]))
    assert d.verdict == NOT_BELOW and not d.ok
    assert any("masking" in a for a in d.advice)


def test_the_objective_adds_its_modality_advice():
    summary = {**BASE, "eval_gain_se": 0.001, "objective": {"advice": ["try objectives.gene_prior=true"]}}
    d = diagnose(summary, _rows([1.40, 1.39, 1.385, 1.381]))
    assert d.verdict == NOT_BELOW and "try objectives.gene_prior=true" in d.advice
    assert d.advice.index("try objectives.gene_prior=true") == 1  # after the what-it-means line


def test_small_gain_within_noise_is_not_learning():
    d = diagnose({**BASE, "eval_gain_se": 0.01}, _rows([1.39, 1.375]))
    assert d.verdict == NOT_BELOW


def test_diverging_on_nan_and_on_rising_loss():
    assert diagnose({**BASE, "status": "diverged"}, _rows([1.3])).verdict == DIVERGING
    d = diagnose({**BASE, "eval_gain_se": 0.001}, _rows([1.30, 1.20, 1.35, 1.37]))
    assert d.verdict == DIVERGING and any("learning rate" in a for a in d.advice)


def test_plateaued():
    d = diagnose({**BASE, "eval_gain_se": 0.001}, _rows([1.30, 1.20, 1.20, 1.20, 1.20, 1.20]))
    assert d.verdict == PLATEAUED


def test_each_further_objective_is_reported_against_its_own_baseline():
    from biofm.health.doctor import diagnose

    comps = {"cross_rna": {"loss": 0.41, "baseline": 0.40, "gain": -0.01, "gain_se": 0.001, "targets": 5000},
             "masked_protein": {"loss": 1.40, "baseline": 1.50, "gain": 0.10, "gain_se": 0.01, "targets": 900}}
    metrics = {"retrieval_accuracy": {"value": 0.17, "chance": 0.03, "items": 256}}
    rows = [{"step": s, "loss": 2.0 - s / 100, "eval_loss": 1.0 - s / 1000, "baseline_reference": "unigram",
             "baseline_unigram": 1.2, "eval_gain_se": 0.001, "components": comps, "metrics": metrics}
            for s in (10, 20)]
    facts = diagnose({}, rows).facts
    assert "objective cross_rna: 0.4100 against its baseline 0.4000: NOT below it by -0.0100" in " ".join(facts)
    assert any(f.startswith("objective masked_protein: 1.4000 against its baseline 1.5000: below") for f in facts)
    assert "retrieval accuracy 0.1700 against chance 0.0300 (256 items)" in facts


def test_a_weighted_sum_of_objectives_is_not_read_as_divergence():
    from biofm.health.doctor import LEARNING, diagnose

    # loss = masked + cross + contrastive (about 2.2), while the verdict is about cross (about 0.17)
    rows = [{"step": s, "loss": 2.2, "loss_cross": 0.17 - s / 1e4, "eval_loss": 0.169 - s / 1e4,
             "baseline_reference": "per_feature", "baseline_per_feature": 0.175, "eval_gain_se": 0.0002}
            for s in (100, 200, 300)]
    summary = {"objective": {"main": "cross", "components": {"masked": 1, "cross": 1, "contrastive": 0.5}}}
    assert diagnose(summary, rows).verdict == LEARNING
