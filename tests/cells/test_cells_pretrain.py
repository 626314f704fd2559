"""Cell pretraining end to end on a synthetic h5ad: objectives, baselines, saved model, embeddings."""

import json
import math

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml
from scipy import stats
from transformers import AutoModelForMaskedLM

from biofm.cells.objectives import nb_nll
from biofm.cli import main as _main


def main(args):
    with pytest.raises(SystemExit) as exit_:
        _main(args)
    assert exit_.value.code in (0, None)


def _h5ad(path, n=160, genes=60, seed=0):
    """Two cell types whose marker genes co-vary: context predicts values beyond each gene's marginal."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    depth = rng.uniform(0.5, 2.0, n)
    mu = np.full((n, genes), 0.5)
    mu[kind == 0, :20] = 6.0
    mu[kind == 1, 20:40] = 6.0
    X = rng.poisson(mu * depth[:, None]).astype(np.float32)
    a = ad.AnnData(sp.csr_matrix(X))
    a.var_names = [f"G{i}" for i in range(genes)]
    a.obs_names = [f"c{i}" for i in range(n)]
    a.obs["cell_type"] = np.where(kind == 0, "A", "B")
    a.write_h5ad(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cells")
    _h5ad(tmp / "cells.h5ad")
    (tmp / "c.yaml").write_text(yaml.safe_dump({
        "name": "c", "run_dir": str(tmp / "run"), "modality": "cells",
        "data": {"h5ad": [str(tmp / "cells.h5ad")], "cache_dir": str(tmp / "cache"), "val_fraction": 0.2},
        "tokenizer": {"binning": "quantile", "n_bins": 5, "max_genes": 63, "selection": "sample"},
        "objectives": {"value_ordinal": 1.0, "contrastive": 0.1},
        "model": {"preset": "tiny"},
        "train": {"steps": 60, "global_batch_tokens": 1024, "micro_batch_size": 16, "lr": 3e-3, "warmup_steps": 5,
                  "eval_every": 30, "log_every": 10, "checkpoint_every": 30, "mask_prob": 0.3},
    }))
    main(["pretrain", str(tmp / "c.yaml")])
    return tmp


def test_summary_has_cell_baselines_and_beats_per_gene_marginal(run):
    summary = json.loads((run / "run" / "summary.json").read_text())
    assert summary["baseline_reference"] == "per_gene"
    assert summary["baseline_uniform"] == pytest.approx(math.log(5))
    assert summary["baseline_per_gene"] <= summary["baseline_unigram"] + 1e-6
    assert summary["objective"]["components"] == {"value_ordinal": 1.0, "contrastive": 0.1}
    # the synthetic cells carry their type in many genes: context beats each gene's own distribution
    assert summary["final_eval_loss"] < summary["baseline_per_gene"]
    rows = [json.loads(x) for x in (run / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "loss_contrastive" in rows[0] and "loss_value_ordinal" in rows[0]


def test_saved_model_loads_with_stock_transformers(run):
    model_dir = run / "run" / "model"
    model = AutoModelForMaskedLM.from_pretrained(model_dir, use_safetensors=True)
    assert model.config.model_type == "bert"
    # gene+value mode: a cell is a set, position embeddings are zero (so default positions are harmless)
    assert float(model.bert.embeddings.position_embeddings.weight.abs().max()) == 0.0
    for f in ["biofm_heads.safetensors", "biofm_cell.json", "tokenizer.json", "gene_vocab.json"]:
        assert (model_dir / f).exists(), f
    info = json.loads((model_dir / "biofm_cell.json").read_text())
    assert info["mode"] == "gene_value" and info["main"] == "value_ordinal"
    # the card: cells are not text, so the Hub's pipeline is feature extraction, not fill-mask
    front = yaml.safe_load((model_dir / "README.md").read_text().split("---")[1])
    assert front["pipeline_tag"] == "feature-extraction" and "cells" in front["tags"]


def test_embed_h5ad_writes_a_new_file_and_leaves_the_input(run):
    src = run / "cells.h5ad"
    before = src.read_bytes()
    main(["embed", "--model", str(run / "run"), "--input", str(src), "--out", str(run / "emb.h5ad")])
    assert src.read_bytes() == before
    out = ad.read_h5ad(run / "emb.h5ad")
    assert out.obsm["X_biofm"].shape == (160, 128) and out.obsm["X_biofm_cls"].shape == (160, 128)
    assert np.isfinite(out.obsm["X_biofm"]).all()
    with pytest.raises(SystemExit) as e:
        _main(["embed", "--model", str(run / "run"), "--input", str(src), "--out", str(src)])
    assert e.value.code == 2


def test_evaluate_cell_task_against_pca_and_hvg(run):
    main(["evaluate", "--model", str(run / "run"), "--task", f"{run / 'cells.h5ad'}:cell_type", "--out",
          str(run / "ev"), "--folds", "3", "--set", "probes.kinds=[logreg]"])
    task = json.loads((run / "ev" / "results.json").read_text())["tasks"][0]
    names = {m["name"] for m in task["methods"]}
    assert {"probe-logreg-mean", "probe-knn-mean", "baseline-pca_logreg", "baseline-hvg_logreg"} <= names
    table = next(t for t in task["tables"] if t["name"] == "embedding_metrics")
    spaces = {r["embedding"] for r in table["rows"]}
    assert spaces == {"baseline-pca", "biofm-mean", "biofm-cls"}
    # the report's pictures: confusion matrices of the best model method and best baseline, counting every
    # cell once per fold by its true class, and the 2-D map of the embeddings (drawn, not kept in the JSON)
    import anndata as ad

    labels = ad.read_h5ad(run / "cells.h5ad").obs["cell_type"].value_counts()
    sides = [c["method"] for c in task["confusion"]]
    assert sides[0] in names and sides[1].startswith("baseline-") and not sides[0].startswith("baseline-")
    for c in task["confusion"]:
        rows = dict(zip(task["classes"], np.asarray(c["matrix"]).sum(1).tolist(), strict=True))
        assert rows == {k: int(v) for k, v in labels.items()}
    emap = task["embedding_map"]
    assert "xy" not in emap and 0 <= emap["layer"] <= 2 and (run / "ev" / emap["png"]).stat().st_size > 1000
    assert (run / "ev" / task["confusion_png"]).exists()
    page = (run / "ev" / "report.html").read_text()
    assert "Confusion matrices" in page and "coloured by label" in page


def test_negative_binomial_nll_matches_scipy():
    count = torch.tensor([0.0, 1.0, 5.0, 40.0])
    mu, theta = torch.tensor([0.3, 2.0, 4.0, 30.0]), torch.tensor([0.5, 2.0, 10.0, 3.0])
    p = (theta / (theta + mu)).numpy()
    ref = -stats.nbinom.logpmf(count.numpy(), theta.numpy(), p)
    np.testing.assert_allclose(nb_nll(count, mu, theta).numpy(), ref, rtol=1e-4)


def test_failing_configuration_is_rejected_where_incoherent(tmp_path):
    from biofm.errors import BiofmError
    from biofm.pretraining import build_config_for

    base = {"modality": "cells", "data": {"h5ad": ["x.h5ad"]}}
    with pytest.raises(BiofmError, match="masked objective"):
        build_config_for({**base, "objectives": {"contrastive": 1.0}}, "cfg")
    with pytest.raises(BiofmError, match="rank_value"):
        build_config_for({**base, "tokenizer": {"mode": "rank_value"}, "objectives": {"value_ce": 1.0}}, "cfg")
