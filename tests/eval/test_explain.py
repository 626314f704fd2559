"""Explanations: k-mer XGBoost's SHAP values find a planted motif (and shuffled labels do not), logistic
coefficients find a planted marker gene, integrated gradients are exact on a linear model and follow the
motif a fine-tuned model learned, and `biofm evaluate` writes them (results.json, the report's tables and
PNG, one console line per task)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from biofm.cli import main
from biofm.dna.baselines import kmer_names, kmer_xgboost
from biofm.dna.tokenizer import KmerTokenizer
from biofm.eval.explain import ExplainConfig, collecting, integrated_gradients, to_positions
from biofm.eval.folds import make_folds
from biofm.eval.types import Task
from biofm.models.presets import build_config, build_model

MOTIFS = ("TGACTC", "GGATCC", "CATATG")


def _motif_task(n: int = 160, length: int = 60, n_classes: int = 2, seed: int = 0) -> Task:
    """Random DNA; with 2 classes the positives carry MOTIFS[0] somewhere, with 3 each class its own motif."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        s = list(rng.choice(list("ACGT"), length))
        c = i % n_classes
        if n_classes > 2 or c == 1:
            p = int(rng.integers(0, length - 6))
            s[p:p + 6] = list(MOTIFS[c if n_classes > 2 else 0])
        seqs.append("".join(s))
        labels.append(c)
    classes = ["neg", "pos"] if n_classes == 2 else [f"m{c}" for c in range(n_classes)]
    return Task("motif", "classification", seqs, np.array(labels), classes)


def _inside(feature: str, motif: str) -> bool:
    return len(feature) >= 4 and feature in motif


def _shap(task: Task, folds) -> tuple[dict, list]:
    with collecting(ExplainConfig()) as found:
        preds = kmer_xgboost(task, folds, 0, n_estimators=30, max_depth=3)
    assert found is not None
    return found.result(task), preds


def test_kmer_names_follow_the_feature_columns():
    names = kmer_names([2, 1])
    assert names[:5] == ["A", "C", "G", "T", "AA"] and names[-1] == "TT" and len(names) == 4 + 16
    from biofm.dna.baselines import kmer_features

    x = kmer_features(["GATTACA"], [1, 2]).toarray()[0]
    assert x[names.index("TT")] == pytest.approx(1 / 6) and x[names.index("CG")] == 0


def test_xgboost_shap_puts_the_planted_kmer_on_top_and_shuffled_labels_do_not():
    task = _motif_task()
    folds = make_folds(task, 2, seed=0)
    res, preds = _shap(task, folds)
    assert res["explanations_kind"] == "shap" and set(res["explanations"]) == {"neg", "pos"}
    pos = res["explanations"]["pos"]
    assert len(pos) == 10 and _inside(pos[0]["feature"], MOTIFS[0]) and pos[0]["mean_shap"] > 0
    assert pos[0]["mean_abs_shap"] >= pos[1]["mean_abs_shap"]
    # on the negatives, the motif's absence is what speaks for them
    assert _inside(res["explanations"]["neg"][0]["feature"], MOTIFS[0])

    rng = np.random.default_rng(1)
    shuffled = Task("shuffled", "classification", task.inputs, rng.permutation(task.labels), task.classes)
    res_s, _ = _shap(shuffled, folds)
    top_s = res_s["explanations"]["pos"][0]
    assert not _inside(top_s["feature"], MOTIFS[0])
    assert top_s["mean_abs_shap"] < pos[0]["mean_abs_shap"] / 3

    # explanations ride on the one fit: the predictions are those of a run without them
    plain = kmer_xgboost(task, folds, 0, n_estimators=30, max_depth=3)
    assert all(np.array_equal(a.proba, b.proba) for a, b in zip(preds, plain, strict=True))


def test_xgboost_shap_per_class_of_a_multiclass_model():
    task = _motif_task(n=150, n_classes=3)
    res, _ = _shap(task, make_folds(task, 2, seed=0))
    for c, motif in enumerate(MOTIFS):
        top = res["explanations"][f"m{c}"][0]
        assert _inside(top["feature"], motif) and top["mean_shap"] > 0, (c, top)


def test_hvg_logreg_coefficients_name_the_planted_marker_gene(tmp_path):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from biofm.cells.baselines import CellBaselineConfig, hvg_logreg

    rng = np.random.default_rng(0)
    n, n_genes, marker = 120, 40, 17
    genes = [f"G{i}" for i in range(n_genes)]
    genes[marker] = "MARKER"
    labels = np.arange(n) % 2
    counts = rng.poisson(3.0, (n, n_genes)).astype(np.float32)
    counts[:, 30:] = rng.poisson(15.0, (n, 10))  # highly expressed genes without signal share the marker's bin
    counts[labels == 1, marker] += rng.poisson(25.0, int((labels == 1).sum()))
    path = tmp_path / "cells.h5ad"
    ad.AnnData(X=sp.csr_matrix(counts), var=pd.DataFrame(index=genes)).write_h5ad(path)
    task = Task("cells", "classification", list(range(n)), labels, ["T", "B"], meta={"h5ad": str(path)})
    with collecting(ExplainConfig()) as found:
        # fewer HVGs than genes: each fold's columns are a different subset, named by that fold's choice
        hvg_logreg(task, make_folds(task, 3, seed=0), 0, CellBaselineConfig(n_hvg=20))
    res = found.result(task)
    assert res["explanations_kind"] == "coefficients" and "not SHAP" in res["explanations_note"]
    assert res["explanations"]["B"][0]["feature"] == "MARKER" and res["explanations"]["B"][0]["coefficient"] > 0
    assert all(r["feature"] != "MARKER" and r["coefficient"] > 0 for r in res["explanations"]["T"])


def test_binary_peak_coefficients_name_the_peaks_that_open_per_cell_type(tmp_path):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from biofm.atac.baselines import AtacBaselineConfig, binary_logreg
    from biofm.atac.tasks import load_atac_task

    rng = np.random.default_rng(0)
    n, n_peaks = 120, 60
    labels = np.array(["A", "B"] * (n // 2))
    p = np.full((n, n_peaks), 0.05)
    p[labels == "A", 7] = p[labels == "B", 42] = 0.9  # one peak opens in each type
    x = rng.binomial(1, p).astype(np.int32)
    x[:, 0] = 1  # no empty cell
    # stored in reverse genome order: the reader sorts the peaks, and the names must follow the columns
    names = [f"chr1_{1000 * j}_{1000 * j + 500}" for j in range(n_peaks)][::-1]
    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(n)])
    ad.AnnData(sp.csr_matrix(x[:, ::-1]), obs=obs, var=pd.DataFrame(index=names)).write_h5ad(tmp_path / "p.h5ad")
    task = load_atac_task(f"{tmp_path / 'p.h5ad'}:cell_type")
    with collecting(ExplainConfig()) as found:
        binary_logreg(task, make_folds(task, 3, seed=0), 0, AtacBaselineConfig())
    top = {cls: rows[0]["feature"] for cls, rows in found.result(task)["explanations"].items()}
    assert top == {"A": "chr1_7000_7500", "B": "chr1_42000_42500"}


class _MeanPoolLinear(torch.nn.Module):
    """logits = W · mean_t(embedding of token t) + b: linear in the embeddings, so integrated gradients
    are known exactly."""

    def __init__(self, nonlinear: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(8, 4)
        self.head = torch.nn.Linear(4, 3)
        self.nonlinear = nonlinear

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.emb

    def forward(self, input_ids, attention_mask):
        h = self.emb(input_ids)
        h = torch.tanh(3 * h) if self.nonlinear else h
        return SimpleNamespace(logits=self.head(h.mean(1)))


def test_integrated_gradients_are_exact_on_a_linear_model():
    model = _MeanPoolLinear()
    ids, ref = [1, 5, 6, 2], [1, 3, 3, 2]  # the reference masks the middle tokens, keeps the ends
    scores, gap = integrated_gradients(model, ids, 2, ref, steps=20)
    with torch.no_grad():
        w = model.head.weight[2] - model.head.weight.mean(0)  # d(z_2 - mean z) / d(mean embedding)
        x, r = model.emb(torch.tensor(ids)), model.emb(torch.tensor(ref))
        expected = ((x - r) @ w / len(ids)).numpy()
    assert np.allclose(scores, expected, atol=1e-6) and abs(gap) < 1e-5
    assert scores[0] == 0 and scores[3] == 0 and abs(scores[1]) > 0  # unchanged tokens get nothing

    curved = _MeanPoolLinear(nonlinear=True)
    scores, gap = integrated_gradients(curved, ids, 2, ref, steps=20)
    assert abs(gap) < 0.02 * abs(scores.sum()) + 1e-4  # completeness, up to the 20-step quadrature


def test_token_scores_spread_over_the_bases_a_kmer_covers(tmp_path):
    from transformers import PreTrainedTokenizerFast

    from biofm.eval.explain import _spans

    KmerTokenizer(3).save(tmp_path)
    tok = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    ids, spans = _spans(tok, "ACGTACGNA", 64)  # <cls> ACG TAC G N A
    assert spans == [(0, 0), (0, 3), (3, 6), (6, 7), (7, 8), (8, 9)] and len(ids) == 6
    pos = to_positions(np.array([9.0, 3.0, -6.0, 1.0, 0.5, 2.0]), spans, 9)
    assert np.allclose(pos, [1, 1, 1, -2, -2, -2, 1, 0.5, 2])  # <cls> covers no base
    assert pos.sum() == pytest.approx(3 - 6 + 1 + 0.5 + 2)


def _tiny_model(tmp, k: int, max_len: int = 64):
    tok = KmerTokenizer(k)
    cfg = build_config("tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, mask_id=tok.mask_id,
                       cls_id=tok.cls_id, eos_id=tok.eos_id, max_len=max_len)
    build_model(cfg, seed=0).save_pretrained(tmp / "model")
    tok.save(tmp / "model")
    return tmp / "model"


def test_attributions_of_a_fine_tuned_model_fall_on_the_planted_motif(tmp_path):
    from transformers import PreTrainedTokenizerFast

    from biofm.eval.finetune import FinetuneConfig, finetune

    model_dir = _tiny_model(tmp_path, 1)
    tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
    rng = np.random.default_rng(0)
    seqs, labels, where = [], [], {}
    for i in range(240):
        s = list(rng.choice(list("ACT"), 24))  # no G outside the motif: the motif alone tells the classes
        if i % 2:
            p = int(rng.integers(0, 18))
            s[p:p + 6] = list("GGGGGG")
            where[i] = p
        seqs.append("".join(s))
        labels.append(i % 2)
    task = Task("g-motif", "classification", seqs, np.array(labels), ["neg", "pos"])
    cfg = FinetuneConfig(methods=["lora"], epochs=4, patience=4, lr_lora=3e-3, batch_size=32)
    with collecting(ExplainConfig(examples_per_class=3)) as found:
        preds = finetune(task, make_folds(task, 2, seed=0), 0, model_dir=model_dir, tokenizer=tok, method="lora",
                         cfg=cfg, max_tokens=64)
    assert (preds[-1].pred == task.labels[preds[-1].test_idx]).mean() > 0.9  # it learned the motif
    attr = found.attribution
    assert attr["method"] == "finetune-lora" and attr["fold"] == 1
    examples = [e for e in attr["examples"] if e["class"] == "pos"]
    assert len(examples) == 3 and len(attr["examples"]) == 6
    for e in examples:
        scores = np.asarray(e["scores"])
        assert len(scores) == len(e["sequence"]) == 24
        p = where[e["row"]]
        inside, outside = scores[p:p + 6], np.delete(scores, range(p, p + 6))
        assert inside.sum() > 0 and np.abs(inside).mean() > 3 * np.abs(outside).mean(), (e["row"], scores)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """`biofm evaluate` of a tiny untrained model on a motif task: explanations on (k-mer XGBoost, IA3),
    explanations on with no fine-tuning (a fresh fit), and explanations off."""
    tmp = tmp_path_factory.mktemp("explain")
    _tiny_model(tmp, 2)
    task = _motif_task(n=80, length=40)
    rows = [f"{s},{task.classes[y]}" for s, y in zip(task.inputs, task.labels, strict=True)]
    (tmp / "motif.csv").write_text("sequence,label\n" + "\n".join(rows) + "\n")
    (tmp / "motif.yaml").write_text(yaml.safe_dump({"name": "motif", "type": "classification",
                                                    "table": "motif.csv"}))
    runs = {}
    for name, extra in {"on": ["finetune.methods=[ia3]"], "fresh": ["finetune.methods=[]"],
                        "off": ["finetune.methods=[]", "explain.enabled=false"]}.items():
        args = ["evaluate", "--model", str(tmp / "model"), "--task", str(tmp / "motif.yaml"),
                "--out", str(tmp / name), "--folds", "2", "--set", "control=false",
                "--set", "probes.kinds=[logreg]", "--set", "probes.poolings=[mean]", "--set", "finetune.epochs=1",
                "--set", "baselines.run=[kmer_xgboost]", "--set", "baselines.xgboost.n_estimators=20",
                "--set", f"cache_dir={tmp / 'cache'}", *[a for x in extra for a in ("--set", x)]]
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code in (0, None)
        runs[name] = (tmp / name, json.loads((tmp / name / "results.json").read_text()))
    return runs


def test_evaluate_writes_explanations_and_attributions(evaluated, capsys):
    out, res = evaluated["on"]
    t = res["tasks"][0]
    xgb = next(m for m in t["methods"] if m["name"] == "baseline-kmer_xgboost")
    assert set(xgb["explanations"]) == {"neg", "pos"} and xgb["explanations_kind"] == "shap"
    assert {"feature", "mean_abs_shap", "mean_shap"} == set(xgb["explanations"]["pos"][0])
    assert xgb["explain_seconds"] >= 0 and xgb["seconds"] >= 0
    assert _inside(xgb["explanations"]["pos"][0]["feature"], MOTIFS[0])
    assert not any("attributions" in m for m in t["methods"])  # only the task keeps the chosen one
    attr = t["attributions"]
    assert attr["method"] == "finetune-ia3" and attr["fold"] == 1 and "integrated gradients" in attr["how"]
    assert [e["class"] for e in attr["examples"]] == ["neg", "neg", "pos", "pos"]
    assert all(len(e["scores"]) == len(e["sequence"]) == 40 for e in attr["examples"])
    report = (out / "report.html").read_text()
    assert "Top features of baseline-kmer_xgboost" in report and xgb["explanations"]["pos"][0]["feature"] in report
    assert (out / attr["png"]).stat().st_size > 1000 and 'alt="attributions of motif"' in report

    from biofm.demo import print_verdicts

    capsys.readouterr()
    print_verdicts(res)
    lines = [line for line in capsys.readouterr().out.splitlines() if "top features" in line]
    assert len(lines) == 1 and lines[0].startswith("[motif] top features of baseline-kmer_xgboost (SHAP): neg: ")


def test_without_fine_tuning_a_fresh_fit_gives_the_attributions_and_off_means_none(evaluated):
    _, fresh = evaluated["fresh"]
    attr = fresh["tasks"][0]["attributions"]
    assert attr["method"].startswith("finetune-ia3 (fresh fit") and len(attr["examples"]) == 4
    assert {m["name"] for m in fresh["methods"]} == {"probe-logreg-mean", "baseline-kmer_xgboost"}  # not scored

    out, off = evaluated["off"]
    t = off["tasks"][0]
    assert t["attributions"] is None and not any("explanations" in m for m in t["methods"])
    assert not list(out.glob("attributions-*.png")) and "Top features" not in (out / "report.html").read_text()


def test_attribution_track_draws_text_with_spaces_and_odd_characters(tmp_path):
    from biofm.eval.explain import draw_attributions

    text = "the p53 gene\u00a0is\tmutated \u2014 ok"
    attr = {"method": "finetune-lora", "fold": 0, "examples": [
        {"row": 0, "class": "yes", "p_class": 0.9, "predicted": "yes", "total": 1.0, "sequence": text,
         "scores": list(np.linspace(-1, 1, len(text)))}]}
    draw_attributions(attr, "t", tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
