"""Benchmarks on their own train / validation / test splits: loading, duplicates, seeds, paired verdicts,
and `biofm evaluate` end to end on a three-file DNA task and a split-column text task."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from biofm.cli import main
from biofm.errors import BiofmError
from biofm.eval.control import gain_sentence, pretraining_gain
from biofm.eval.evaluate import _per_seed
from biofm.eval.folds import make_folds, n_seeds, protocol, validation_split, with_fixed_split
from biofm.eval.types import FoldPrediction, Task
from biofm.eval.verdict import task_verdict


def _motif(rng: np.random.Generator, label: int) -> str:
    s = list(rng.choice(list("ACGT"), 40))
    if label:
        s[10:16] = list("GGGGGG")
    return "".join(s)


def _write(path: Path, rows: list[tuple[str, int]]) -> None:
    path.write_text("sequence,label\n" + "".join(f"{s},{y}\n" for s, y in rows))


@pytest.fixture(scope="module")
def dna(tmp_path_factory):
    """A tiny saved model and a motif task as three files; 4 test rows copy training sequences."""
    from biofm.dna.tokenizer import KmerTokenizer
    from biofm.models.presets import build_config, build_model

    tmp = tmp_path_factory.mktemp("fixed")
    tok = KmerTokenizer(2)
    cfg = build_config("tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=64)
    build_model(cfg, seed=0).save_pretrained(tmp / "model")
    tok.save(tmp / "model")
    rng = np.random.default_rng(0)
    train = [(_motif(rng, i % 2), i % 2) for i in range(80)]
    dev = [(_motif(rng, i % 2), i % 2) for i in range(20)]
    test = [(_motif(rng, i % 2), i % 2) for i in range(36)] + train[:3] + dev[:1]
    _write(tmp / "train.csv", train)
    _write(tmp / "dev.csv", dev)
    _write(tmp / "test.csv", test)
    (tmp / "motif.yaml").write_text(yaml.safe_dump({"name": "motif3", "type": "classification", "train": "train.csv",
                                                    "validation": "dev.csv", "test": "test.csv"}))
    return tmp


def _cli(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)


# ------------------------------------------------------------------------------------------ loading


def test_three_file_dna_task_loads_as_a_fixed_split(dna):
    from biofm.dna.tasks import load_task

    task = load_task(dna / "motif.yaml")
    sizes = {s: int(np.sum(task.split == s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 80, "validation": 20, "test": 36}  # the 4 copied test rows are gone
    assert task.meta["test_duplicates"] == {"found": 4, "removed": 4}
    assert protocol(task) == "fixed split (train 80 / validation 20 / test 36, 3 seeds)"
    train_seqs = {x for x, s in zip(task.inputs, task.split, strict=True) if s != "test"}
    assert not train_seqs & {x for x, s in zip(task.inputs, task.split, strict=True) if s == "test"}
    folds = make_folds(task, 10, 0)
    assert len(folds) == 3 and all(np.array_equal(te, folds[0][1]) for _, te in folds)
    assert set(task.split[folds[0][0]]) == {"train"} and set(task.split[folds[0][1]]) == {"test"}
    assert n_seeds(task, 5) == 5 and len(make_folds(task, 10, 0, seeds=5)) == 5


def test_validation_split_returns_the_named_validation_rows(dna):
    from biofm.dna.tasks import load_task

    task = load_task(dna / "motif.yaml")
    train, _ = make_folds(task)[0]
    fit, val = validation_split(train, task, 0.1, seed=7)
    assert set(task.split[val]) == {"validation"} and len(val) == 20
    np.testing.assert_array_equal(fit, train)
    # without named validation rows, it is carved from the train rows as ever
    carved = with_fixed_split(Task("t", "classification", [f"x{i}" for i in range(40)], np.arange(40) % 2),
                              np.array(["train"] * 30 + ["test"] * 10))
    fit, val = validation_split(make_folds(carved)[0][0], carved, 0.2, seed=0)
    assert len(val) == 6 and set(carved.split[val]) == {"train"} and not set(fit) & set(val)


def test_duplicates_removed_unless_kept():
    # test rows 6.. : AA, CC (train), AG (validation) and GG (train) are seen before; CA, GT, TA are new
    inputs = ["AA", "CC", "GG", "TT", "AC", "AG", "AA", "CA", "CC", "GT", "AG", "GG", "TA"]
    split = np.array(["train"] * 4 + ["validation"] * 2 + ["test"] * 7)
    task = Task("d", "classification", inputs, np.arange(13) % 2, source="d.yaml")
    removed = with_fixed_split(task, split)
    assert removed.meta["test_duplicates"] == {"found": 4, "removed": 4}
    assert removed.inputs[6:] == ["CA", "GT", "TA"] and removed.labels[6:].tolist() == [1, 1, 0]
    kept = with_fixed_split(task, split, keep_test_duplicates=True)
    assert kept.meta["test_duplicates"] == {"found": 4, "removed": 0} and len(kept.labels) == 13
    with pytest.raises(BiofmError, match=r"d\.yaml: every test row duplicates"):
        with_fixed_split(Task("d", "classification", ["A", "C", "A", "C"], np.array([0, 1, 0, 1]), source="d.yaml"),
                         np.array(["train", "train", "test", "test"]))
    with pytest.raises(BiofmError, match=r"d\.yaml: the fixed split has no test rows"):
        with_fixed_split(task, np.array(["train"] * 13))
    with pytest.raises(BiofmError, match="train rows hold a single class"):
        with_fixed_split(task, np.array(["train", "test"] * 6 + ["test"]))


def test_split_column_values_and_mistakes(tmp_path):
    from biofm.dna.tasks import load_task
    from biofm.text.tasks import load_text_task

    rng = np.random.default_rng(1)
    rows = [(_motif(rng, i % 2), i % 2, ["Train", " dev", "TEST", "valid", "val", "train"][i % 6]) for i in range(24)]
    (tmp_path / "t.csv").write_text("sequence,label,split\n" + "".join(f"{s},{y},{p}\n" for s, y, p in rows))
    (tmp_path / "t.yaml").write_text("name: t\ntype: classification\ntable: t.csv\n")
    task = load_task(tmp_path / "t.yaml")
    assert [int(np.sum(task.split == s)) for s in ("train", "validation", "test")] == [8, 12, 4]
    (tmp_path / "bad.csv").write_text("text,label,split\n" + "".join(f"t{i},{i % 2},train\n" for i in range(11))
                                      + "t11,1,holdout\n")
    with pytest.raises(BiofmError, match=r"bad\.csv, line 13: split 'holdout' is not train"):
        load_text_task(tmp_path / "bad.csv")
    both = "".join(f"t{i},{i % 2},train,1\n" for i in range(12))
    (tmp_path / "both.csv").write_text("text,label,split,fold\n" + both)
    with pytest.raises(BiofmError, match="both a 'fold' and a 'split' column"):
        load_text_task(tmp_path / "both.csv")
    for text, message in [
        ("table: t.csv\ntrain: t.csv\ntest: t.csv\n", "give either table: or train: \\+ test:"),
        ("train: t.csv\nvalidation: t.csv\n", "test: is missing"),
        ("train: t.csv\ntest: t.csv\nfold_column: fold\n", "fold_column: applies to a single table"),
        ("table: t.csv\nsplit_column: none\n", "no column 'none'"),
        ("table: t.csv\nfold_column: label\nseeds: 2\n", "seeds: applies to a fixed split"),
    ]:
        (tmp_path / "e.yaml").write_text("name: e\ntype: classification\n" + text)
        with pytest.raises(BiofmError, match=message):
            load_task(tmp_path / "e.yaml")


def test_cell_task_split_column(tmp_path):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from biofm.cells.tasks import load_cell_task

    n = 30
    obs = pd.DataFrame({"cell_type": ["T", "B", "NK"] * 10, "part": ["train"] * 18 + ["dev"] * 6 + ["test"] * 6},
                       index=[f"c{i}" for i in range(n)])
    x = sp.csr_matrix(np.random.default_rng(0).poisson(1.0, (n, 12)).astype(np.float32))
    ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(12)])).write_h5ad(tmp_path / "c.h5ad")
    (tmp_path / "c.yaml").write_text("name: c\nh5ad: c.h5ad\nlabel_column: cell_type\nsplit_column: part\nseeds: 2\n")
    task = load_cell_task(tmp_path / "c.yaml")
    assert protocol(task) == "fixed split (train 18 / validation 6 / test 6, 2 seeds)"
    assert task.meta["test_duplicates"] is None  # cells are not compared by content
    (tmp_path / "d.yaml").write_text("name: d\nh5ad: c.h5ad\nlabel_column: cell_type\nsplit_column: cell_type\n")
    with pytest.raises(BiofmError, match="cell 'c0' has split 'T'"):
        load_cell_task(tmp_path / "d.yaml")


# ------------------------------------------------------------------------------------------ seeds and verdicts


def test_per_seed_runs_each_seed_on_its_own():
    """A method that seeds every fold alike still gets a different seed per repeat of a fixed split."""
    task = with_fixed_split(Task("s", "classification", [f"x{i}" for i in range(20)], np.arange(20) % 2),
                            np.array(["train"] * 14 + ["test"] * 6), seeds=3)
    calls = []

    def method(folds, seed):
        calls.append((len(folds), seed))
        return [FoldPrediction(0, te, np.full(len(te), seed % 2)) for _, te in folds]

    preds = _per_seed(task, make_folds(task), 10, method)
    assert calls == [(1, 10), (1, 11), (1, 12)] and [p.fold for p in preds] == [0, 1, 2]
    assert [int(p.pred[0]) for p in preds] == [0, 1, 0]
    cv = Task("cv", "classification", [f"x{i}" for i in range(20)], np.arange(20) % 2)
    calls.clear()
    assert len(_per_seed(cv, make_folds(cv, 4), 10, method)) == 4 and calls == [(4, 10)]


def test_model_methods_get_one_seed_each():
    """Fine-tuning (a modality's model method) runs once per seed with seed + k, its time budget shared."""
    from biofm.eval.evaluate import EvaluateConfig, _model_methods

    task = with_fixed_split(Task("s", "classification", [f"x{i}" for i in range(20)], np.arange(20) % 2),
                            np.array(["train"] * 14 + ["test"] * 6), seeds=2)
    seen = []

    class Hooks:
        @staticmethod
        def model_methods(task, folds, emb, cfg, model_dir, model, tok):
            def run():
                seen.append((len(folds), cfg.seed, cfg.finetune.time_budget_s))
                return [FoldPrediction(0, te, np.zeros(len(te), dtype=int)) for _, te in folds]

            yield "finetune-ia3", "finetune", run

    cfg = EvaluateConfig(seed=5, finetune={"time_budget_s": 60})
    ((name, _, run),) = _model_methods(task, make_folds(task), {}, cfg, Hooks, Path("m"), None, None)
    preds = run()
    assert name == "finetune-ia3" and [p.fold for p in preds] == [0, 1]
    assert seen == [(1, 5, 30.0), (1, 6, 30.0)] and cfg.seed == 5 and cfg.finetune.time_budget_s == 60


def _method(name, kind, scores):
    per_fold = [{"mcc": s} for s in scores]
    return {"name": name, "kind": kind, "per_fold": per_fold,
            "summary": {"mcc": {"mean": float(np.mean(scores)), "std": float(np.std(scores, ddof=1))}}}


def test_verdict_is_paired_over_seeds():
    # model 0.02 above the baseline on every seed: a paired win NT's ±2 s.d. rule calls a match
    model = _method("probe-logreg-mean", "probe", [0.60, 0.70, 0.65])
    base = _method("baseline-kmer_logreg", "baseline", [0.58, 0.68, 0.63])
    v = task_verdict("t", [model, base], "mcc", unit="seeds")
    assert v.outcome == "beats" and v.nt_outcome == "matches" and v.paired["n"] == 3
    assert "3 seeds" in v.sentence() and "folds" not in v.sentence()
    assert "3 folds" in task_verdict("t", [model, base], "mcc").sentence()
    twin = _method("control-probe-logreg-mean", "control", [0.50, 0.61, 0.55])
    rows = pretraining_gain([model, twin], "mcc", unit="seeds")
    # without predictions (as here) the pairing falls back to the seeds
    assert (rows[0]["paired_n"], rows[0]["paired_over"], rows[0]["outcome"]) == (3, "seeds", "gain")
    assert "3 seeds" in gain_sentence("t", rows)


# ------------------------------------------------------------------------------------------ end to end


def test_three_file_dna_task_end_to_end(dna):
    out = dna / "out"
    _cli(["evaluate", "--model", str(dna / "model"), "--task", str(dna / "motif.yaml"), "--out", str(out),
          "--set", "probes.kinds=[logreg]", "--set", "probes.poolings=[mean]", "--set", "finetune.methods=[]",
          "--set", "baselines.run=[kmer_logreg,cnn]", "--set", "baselines.cnn.epochs=2",
          "--set", f"cache_dir={dna / 'cache'}"])
    res = json.loads((out / "results.json").read_text())
    t = res["tasks"][0]
    assert t["protocol"] == "fixed split (train 80 / validation 20 / test 36, 3 seeds)"
    assert t["seeds"] == 3 and t["folds"] == 3 and t["n"] == 136
    assert t["split"] == {"train": 80, "validation": 20, "test": 36}
    assert t["test_duplicates"] == {"found": 4, "removed": 4}
    names = {m["name"] for m in t["methods"]}
    assert names == {"probe-logreg-mean", "control-probe-logreg-mean",
                     "baseline-kmer_logreg", "baseline-cnn"}
    assert all(len(m["per_fold"]) == 3 for m in t["methods"])
    cnn = next(m for m in t["methods"] if m["name"] == "baseline-cnn")
    assert len({round(f["auroc"], 9) for f in cnn["per_fold"]}) > 1  # a different seed per repeat
    kmer = next(m for m in t["methods"] if m["name"] == "baseline-kmer_logreg")
    assert kmer["summary"]["mcc"]["mean"] > 0.3 and kmer["summary"]["mcc"]["std"] == 0.0  # deterministic
    # with predictions, the comparison is a paired bootstrap over the 36 test rows, each seed's scores averaged
    assert "36 test rows x 3 seeds" in t["verdict"]["sentence"] and t["verdict"]["paired"]["unit"] == "test rows"
    assert "3 seeds" in t["control_sentence"]
    report = (out / "report.html").read_text()
    assert "fixed split (train 80 / validation 20 / test 36, 3 seeds)" in report and "were removed" in report
    with open(out / "results.csv") as fh:
        assert {r["protocol"] for r in csv.DictReader(fh)} == {t["protocol"]}


def test_split_column_text_task_end_to_end(tmp_path):
    words = {"yes": "benefit improved effective", "no": "harm worse failed", "maybe": "unclear mixed uncertain"}
    rng = np.random.default_rng(0)
    lines = []
    for i in range(90):
        label = ["yes", "no", "maybe"][i % 3]
        text = " ".join(rng.choice([*words[label].split(), "the", "study", "patients", "trial"], 12))
        part = "test" if i >= 66 else "Dev" if i >= 54 else "train"
        lines.append(f"{text}\t{label}\t{part}\n")
    lines.append(lines[0].replace("\ttrain\n", "\ttest\n"))  # a duplicated text, kept on request
    (tmp_path / "qa.tsv").write_text("text\tlabel\tsplit\n" + "".join(lines))
    (tmp_path / "qa.yaml").write_text("name: qa\ntype: classification\ntable: qa.tsv\ntext_column: text\n"
                                      "seeds: 4\nkeep_test_duplicates: true\n")
    out = tmp_path / "out"
    _cli(["evaluate", "--task", str(tmp_path / "qa.yaml"), "--out", str(out), "--set", "seeds=2"])
    t = json.loads((out / "results.json").read_text())["tasks"][0]
    assert t["protocol"] == "fixed split (train 54 / validation 12 / test 25, 2 seeds)"  # --set beats the task
    assert t["test_duplicates"] == {"found": 1, "removed": 0}
    (m,) = t["methods"]
    assert m["name"] == "baseline-tfidf_logreg" and len(m["per_fold"]) == 2 and m["summary"]["mcc"]["mean"] > 0.5
    assert "fixed split" in (out / "report.html").read_text()


def test_shipped_pubmedqa_uses_the_official_test_split(mirror):
    from biofm.text.tasks import load_text_task

    task = load_text_task("pubmedqa")
    assert protocol(task) == "fixed split (train 500 / validation carved from train / test 500, 3 seeds)"
    assert task.meta["test_duplicates"] == {"found": 0, "removed": 0}
    assert np.bincount(task.labels[task.split == "test"]).tolist() == [55, 169, 276]  # maybe / no / yes


def test_text_split_yaml_is_recognised_without_text_column(tmp_path):
    from biofm.eval.evaluate import load_any_task

    for part, n in (("train", 20), ("test", 10)):
        rows = "".join(f"{part}{i} other\t{i % 2}\n" for i in range(n))
        (tmp_path / f"{part}.tsv").write_text("text\tlabel\n" + rows)
    (tmp_path / "t.yaml").write_text("name: t\ntype: classification\ntrain: train.tsv\ntest: test.tsv\n")
    modality, task = load_any_task(str(tmp_path / "t.yaml"), model_modality="text")
    assert modality == "text" and task.inputs[0] == "train0 other"
