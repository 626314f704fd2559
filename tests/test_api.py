"""biofm from a notebook: pretrain → evaluate → embed through the Python API, and the same numbers as the CLI."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from biofm import api
from biofm.cli import main
from biofm.errors import BiofmError


def _cli(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)


def _genome(path):
    rng = np.random.default_rng(0)
    seq = "".join("ATGGCGTTAACC" if rng.random() < 0.5 else "".join(rng.choice(list("ACGT"), 3))
                  for _ in range(1500))
    path.write_text(f">chr1\n{seq}\n>chr2\n{seq[::-1]}\n")


@pytest.fixture(scope="module")
def dna_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    _genome(tmp / "g.fa")
    config = {"name": "api", "run_dir": str(tmp / "run"),
              "data": {"fasta": [str(tmp / "g.fa")], "cache_dir": str(tmp / "cache"), "region_bp": 2000,
                       "val_fraction": 0.25},
              "tokenizer": {"k": 2}, "model": {"preset": "tiny", "block_tokens": 64},
              "train": {"steps": 50, "global_batch_tokens": 512, "micro_batch_size": 8, "eval_every": 4,
                        "log_every": 2, "checkpoint_every": 4, "warmup_steps": 1}}
    run = api.pretrain(config, train__steps=6, progress=False)  # a keyword override wins over the dict
    return tmp, run


def test_pretrain_returns_the_run(dna_run):
    tmp, run = dna_run
    assert run.path == tmp / "run" and (run.model / "model.safetensors").is_file()
    assert run.summary["steps"] == 6 and np.isfinite(run.eval_loss)
    assert run.verdict in {"learning", "not below the context-free baseline", "plateaued"}
    assert yaml.safe_load((run.path / "config.yaml").read_text())["train"]["steps"] == 6
    with pytest.raises(BiofmError, match="run folder exists"):
        api.pretrain(run.path / "config.yaml")


def test_evaluate_returns_the_results_table_and_verdicts(dna_run):
    tmp, run = dna_run
    rng = np.random.default_rng(1)
    rows = []
    for i in range(90):
        s = list(rng.choice(list("ACGT"), 30))
        if i % 2:
            s[5:11] = list("GGGGGG")
        rows.append(f"{''.join(s)},{i % 2}")
    (tmp / "motif.csv").write_text("sequence,label\n" + "\n".join(rows) + "\n")
    (tmp / "motif.yaml").write_text(yaml.safe_dump({"name": "motif", "type": "classification",
                                                    "table": "motif.csv"}))
    table = api.evaluate(run, str(tmp / "motif.yaml"), folds=3, probes__kinds=["logreg"], finetune__methods=[],
                         baselines__run=["kmer_logreg"])
    assert table.attrs["out"] == run.path / "eval"  # beside the model, by default
    on_disk = pd.read_csv(run.path / "eval" / "results.csv")
    pd.testing.assert_frame_equal(table, on_disk)
    assert set(table["method"]) >= {"probe-logreg-mean", "control-probe-logreg-mean", "baseline-kmer_logreg"}
    verdicts = table.attrs["verdicts"]
    assert len(verdicts) == 2 and "best baseline" in verdicts[0] and "random-weights control" in verdicts[1]


def test_embed_sequences_equals_the_cli(dna_run):
    tmp, run = dna_run
    seqs = ["ACGTACGTTTGA", "GGGGCCCCAAAATTTT", "ATG"]
    (tmp / "s.fa").write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    _cli(["embed", "--model", str(run.path), "--input", str(tmp / "s.fa"), "--out", str(tmp / "e.npy")])
    from_cli = np.load(tmp / "e.npy")
    from_api = api.embed(seqs, run)
    assert from_api.shape == (3, from_cli.shape[2])
    np.testing.assert_allclose(from_api, from_cli[:, -1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(api.embed(tmp / "s.fa", run.model, layer=0), from_cli[:, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(api.embed(seqs, run, pooling="cls"), from_api)
    with pytest.raises(BiofmError, match="layer 9"):
        api.embed(seqs, run, layer=9)


def _cells(n=120, genes=40, seed=0):
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    mu = np.full((n, genes), 0.5)
    mu[kind == 0, :15] = 5.0
    mu[kind == 1, 15:30] = 5.0
    a = ad.AnnData(sp.csr_matrix(rng.poisson(mu).astype(np.float32)))
    a.var_names = [f"G{i}" for i in range(genes)]
    a.obs_names = [f"c{i}" for i in range(n)]
    a.obs["cell_type"] = np.where(kind == 0, "A", "B")
    return a


def test_embed_anndata_in_place_or_as_a_copy_like_the_cli(tmp_path):
    cells = _cells()
    cells.write_h5ad(tmp_path / "cells.h5ad")
    run = api.pretrain({"name": "c", "run_dir": str(tmp_path / "run"), "modality": "cells",
                        "data": {"h5ad": [str(tmp_path / "cells.h5ad")], "cache_dir": str(tmp_path / "cache"),
                                 "val_fraction": 0.2},
                        "tokenizer": {"binning": "quantile", "n_bins": 5, "max_genes": 41},
                        "model": {"preset": "tiny"},
                        "train": {"steps": 4, "global_batch_tokens": 512, "micro_batch_size": 8, "eval_every": 2,
                                  "checkpoint_every": 2, "warmup_steps": 1}}, progress=False)
    copy = api.embed(cells, run, copy=True)
    assert "X_biofm" not in cells.obsm and copy.obsm["X_biofm"].shape == (120, 128)
    assert api.embed(cells, run, key_added="X_mine") is None  # in place, scanpy style
    np.testing.assert_array_equal(cells.obsm["X_mine"], copy.obsm["X_biofm"])
    assert cells.uns["biofm"]["key"] == "X_mine" and "X_mine_cls" in cells.obsm
    _cli(["embed", "--model", str(run.path), "--input", str(tmp_path / "cells.h5ad"), "--out",
          str(tmp_path / "e.h5ad")])
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "e.h5ad").obsm["X_biofm"], copy.obsm["X_biofm"], atol=1e-6)
    bad = cells.copy()
    bad.X = bad.X * 0.5  # no longer counts
    with pytest.raises(BiofmError, match="non-integer values"):
        api.embed(bad, run)


def test_default_output_folder_beside_a_run_or_named_after_a_hub_id(dna_run):
    from biofm.api import evaluate_config

    run = dna_run[1]
    assert Path(evaluate_config(run.path / "model", ["promoter"]).out) == run.path / "eval"
    assert evaluate_config("InstaDeepAI/nucleotide-transformer-500m-human-ref", ["promoter"]).out == \
        "eval-InstaDeepAI_nucleotide-transformer-500m-human-ref"


def test_the_verbs_are_at_the_package_top_level():
    import biofm
    import biofm.pretraining  # the module of `biofm pretrain` no longer shadows the function

    assert biofm.pretrain is api.pretrain and biofm.evaluate is api.evaluate and biofm.embed is api.embed
    assert callable(biofm.dataset_path) and "pretrain" in dir(biofm)
    with pytest.raises(AttributeError, match="no attribute 'pretrian'"):
        biofm.pretrian  # noqa: B018
