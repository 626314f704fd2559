"""Geneformer as published: a tiny random-weight BertForMaskedLM laid out as ctheodoris/Geneformer lays its files
out (config.json, safetensors weights, geneformer/token_dictionary.pkl and gene_median_dictionary.pkl), its
rank-value encoding checked against Geneformer's own rule, the pickle flag, and `biofm evaluate` on PBMCs."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForMaskedLM

from biofm import api
from biofm.cells.geneformer import GeneformerTokenizer, layer_embeddings, read_dictionary
from biofm.cli import main
from biofm.errors import BiofmError
from biofm.models.load import load_for_embedding, model_modality

HIDDEN = 32
GENES = [f"ENSG{i:011d}" for i in range(40)]


def geneformer(folder: Path, genes: list[str], medians: list[float], *, v2: bool = False, max_pos: int = 2048,
               fmt: str = "pkl", dict_dir: Path | None = None, suffix: str = "", seed: int = 0) -> Path:
    """A Geneformer checkpoint: BertForMaskedLM config as published (relu, 2,048 positions, pad 0), weights, and
    its dictionaries in `geneformer/` (<pad> 0, <mask> 1; the 2024 models add <cls> 2, <eos> 3)."""
    specials = ["<pad>", "<mask>", *(["<cls>", "<eos>"] if v2 else [])]
    tokens = {t: i for i, t in enumerate([*specials, *genes])}
    cfg = {"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.02, "gradient_checkpointing": False,
           "hidden_act": "relu", "hidden_dropout_prob": 0.02, "hidden_size": HIDDEN, "initializer_range": 0.02,
           "intermediate_size": 2 * HIDDEN, "layer_norm_eps": 1e-12, "max_position_embeddings": max_pos,
           "model_type": "bert", "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 0,
           "position_embedding_type": "absolute", "transformers_version": "4.6.0.dev0", "type_vocab_size": 2,
           "use_cache": True, "vocab_size": len(tokens)}
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(**cfg))
    folder.mkdir(parents=True, exist_ok=True)
    state, seen = {}, set()
    for name, t in model.state_dict().items():
        if t.data_ptr() not in seen:  # tied decoder weights are saved once
            seen.add(t.data_ptr())
            state[name] = t.contiguous().clone()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    where = dict_dir or folder / "geneformer"
    where.mkdir(parents=True, exist_ok=True)
    write_dictionary(where / f"token_dictionary{suffix}.{fmt}", tokens)
    write_dictionary(where / f"gene_median_dictionary{suffix}.{fmt}", dict(zip(genes, medians, strict=True)))
    return folder


def write_dictionary(path: Path, data: dict) -> None:
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        with path.open("wb") as fh:
            pickle.dump(data, fh)


def counts(n: int, genes: list[str], seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.gamma(0.5, 4.0, size=(n, len(genes))))
    return sp.csr_matrix(x.astype(np.float32))


def reference_rank_value(X: np.ndarray, genes: list[str], tokens: dict, medians: dict, n_genes: int) -> list[list]:
    """Geneformer's TranscriptomeTokenizer, cell by cell: genes of the median dictionary, counts / cell total *
    10,000 / median, the non-zero ones sorted descending (np.argsort(-x)), truncated."""
    loc = np.array([j for j, g in enumerate(genes) if g in medians])
    norm = np.array([medians[genes[j]] for j in loc])
    gene_tokens = np.array([tokens[genes[j]] for j in loc])
    out = []
    for row in X:
        x = row[loc] / row.sum() * 10_000 / norm
        nz = np.nonzero(x)[0]
        out.append(list(gene_tokens[nz][np.argsort(-x[nz])][:n_genes]))
    return out


def _rng_medians(n: int, seed: int = 1) -> list[float]:
    return list(np.random.default_rng(seed).uniform(0.2, 5.0, n))


# ---------------------------------------------------------------------------------------- encoding


def test_rank_value_encoding_is_geneformers(tmp_path):
    """Genes outside the median dictionary are skipped, zero counts dropped, order by normalised value, 2021
    dictionaries (no <cls>/<eos>) truncated to the model's positions."""
    medians = _rng_medians(len(GENES))
    folder = geneformer(tmp_path / "gf", GENES[:30], medians[:30], max_pos=12, fmt="json")
    _, tok = load_for_embedding(folder)
    assert isinstance(tok, GeneformerTokenizer) and tok.cls_token_id is None and tok.max_len == 12
    X = counts(25, GENES, seed=2)  # 10 of the 40 columns are genes Geneformer does not know
    ids, attention = tok.encode(X, np.array(GENES))
    want = reference_rank_value(X.toarray(), GENES, tok.tokens, dict(zip(GENES[:30], medians[:30], strict=True)), 12)
    for i, expected in enumerate(want):
        n = int(attention[i].sum())
        assert ids[i, :n].tolist() == expected and n == len(expected) <= 12
        assert (ids[i, n:] == tok.pad_token_id).all()
    assert max(len(w) for w in want) == 12  # truncation was exercised


def test_2024_dictionaries_frame_a_cell_with_cls_and_eos(tmp_path):
    medians = _rng_medians(len(GENES))
    folder = geneformer(tmp_path / "gf2", GENES, medians, v2=True, max_pos=10, fmt="json")
    _, tok = load_for_embedding(folder)
    X = counts(6, GENES, seed=3)
    ids, attention = tok.encode(X, np.array(GENES))
    want = reference_rank_value(X.toarray(), GENES, tok.tokens, dict(zip(GENES, medians, strict=True)), 8)
    for i, expected in enumerate(want):
        n = int(attention[i].sum())
        assert ids[i, :n].tolist() == [tok.cls_token_id, *expected, tok.eos_token_id]


def test_embeddings_are_the_geneformer_forward_pass(tmp_path):
    folder = geneformer(tmp_path / "gf3", GENES, _rng_medians(len(GENES)), v2=True, fmt="json")
    model, tok = load_for_embedding(folder)
    assert model_modality(folder) == "cells"
    X = counts(5, GENES, seed=4)
    emb = layer_embeddings(model, tok, X, np.array(GENES), batch_size=2)
    assert emb["mean"].shape == (5, 3, HIDDEN) and set(emb) == {"mean", "cls"}
    ids, attention = tok.encode(X[3], np.array(GENES))
    with torch.no_grad():
        hidden = model.bert(input_ids=ids, attention_mask=attention).last_hidden_state[0]
    n = int(attention.sum())
    np.testing.assert_allclose(emb["mean"][3, -1], hidden[:n].mean(0).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(emb["cls"][3, -1], hidden[0].numpy(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------- pickles, layouts


def _h5ad(path: Path, n: int = 30) -> Path:
    adata = ad.AnnData(X=counts(n, GENES, seed=5))
    adata.var_names = GENES
    adata.obs_names = [f"c{i}" for i in range(n)]
    adata.write_h5ad(path)
    return path


def test_pickled_dictionaries_are_read_only_with_allow_pickle(tmp_path, capsys):
    folder = geneformer(tmp_path / "gf", GENES, _rng_medians(len(GENES)))  # token_dictionary.pkl, as published
    src, out = _h5ad(tmp_path / "cells.h5ad"), tmp_path / "out.h5ad"
    args = ["embed", "--model", str(folder), "--input", str(src), "--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == BiofmError.exit_code and len(err.splitlines()) == 1
    assert "token_dictionary.pkl: a Python pickle" in err and "--allow-pickle" in err and "run code" in err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        main([*args, "--allow-pickle"])
    assert exc.value.code in (0, None)
    got = ad.read_h5ad(out)
    assert got.obsm["X_biofm"].shape == (30, HIDDEN) and "X_biofm_cls" not in got.obsm  # 2021 model: no <cls>
    assert got.uns["biofm"]["encoding"] == "Geneformer rank-value" and got.uns["biofm"]["gene_coverage"] == 1.0


def test_json_dictionaries_need_no_flag_and_anndata_is_embedded_in_place(tmp_path):
    folder = geneformer(tmp_path / "gf", GENES, _rng_medians(len(GENES)), v2=True, fmt="json")
    adata = ad.read_h5ad(_h5ad(tmp_path / "cells.h5ad"))
    assert api.embed(adata, folder) is None
    assert adata.obsm["X_biofm"].shape == (30, HIDDEN) and adata.obsm["X_biofm_cls"].shape == (30, HIDDEN)
    assert not np.allclose(adata.obsm["X_biofm"][0], adata.obsm["X_biofm"][1])


def test_a_pickle_that_names_code_is_refused_even_with_the_flag(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "token_dictionary.pkl"
    path.write_bytes(pickle.dumps({"<pad>": 0, "evil": Payload()}))
    with pytest.raises(BiofmError, match=r"refused or unreadable pickle .*names (posix|os|nt)\.system"):
        read_dictionary(path, allow_pickle=True)
    assert not marker.exists()


def test_the_repository_layout_picks_the_dictionary_that_fits_the_model(tmp_path):
    """ctheodoris/Geneformer keeps models in subfolders and several dictionary versions in geneformer/."""
    repo = tmp_path / "Geneformer"
    medians = _rng_medians(len(GENES))
    model = geneformer(repo / "gf-6L-30M-i2048", GENES[:20], medians[:20], fmt="json", dict_dir=repo / "geneformer",
                       suffix="_gc30M")
    # a larger dictionary of another model beside it
    write_dictionary(repo / "geneformer" / "token_dictionary_gc104M.json",
                     {t: i for i, t in enumerate(["<pad>", "<mask>", "<cls>", "<eos>", *GENES])})
    write_dictionary(repo / "geneformer" / "gene_median_dictionary_gc104M.json", dict(zip(GENES, medians, strict=True)))
    _, tok = load_for_embedding(model)
    assert tok.source.name == "token_dictionary_gc30M.json" and len(tok.tokens) == 22


def test_a_fitting_json_dictionary_is_used_beside_pickles_of_other_versions(tmp_path):
    folder = geneformer(tmp_path / "gf", GENES[:10], _rng_medians(10), fmt="json")
    write_dictionary(folder / "geneformer" / "token_dictionary_gc104M.pkl",
                     {t: i for i, t in enumerate(["<pad>", "<mask>", *GENES])})
    _, tok = load_for_embedding(folder)  # no --allow-pickle needed: the JSON dictionary fits the model
    assert tok.source.name == "token_dictionary.json"


def test_fill_mask_on_a_cell_model_is_one_line(tmp_path, capsys):
    folder = geneformer(tmp_path / "gf", GENES, _rng_medians(len(GENES)), fmt="json")
    with pytest.raises(SystemExit) as exc:
        main(["fill-mask", "--model", str(folder), "--sequence", "CD3E <mask>"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == BiofmError.exit_code and len(err.splitlines()) == 1 and "reads cells" in err


def test_a_dictionary_of_another_model_is_refused(tmp_path):
    folder = geneformer(tmp_path / "gf", GENES[:10], _rng_medians(10), fmt="json")
    write_dictionary(folder / "geneformer" / "token_dictionary.json",
                     {t: i for i, t in enumerate(["<pad>", "<mask>", *GENES])})
    with pytest.raises(BiofmError, match="outside the model's vocabulary"):
        load_for_embedding(folder)


# ---------------------------------------------------------------------------------------- evaluate


def test_evaluate_a_geneformer_checkpoint_on_pbmc_celltypes(mirror, tmp_path):
    from biofm.cells.h5ad import read_counts
    from biofm.datasets import dataset_path

    genes = read_counts(dataset_path("pbmc700")).genes.tolist()  # gene symbols: the test dictionary uses them
    # seed 7: not the random-weights control's seed (0), whose weights would then be these very ones
    folder = geneformer(tmp_path / "gf", genes, _rng_medians(len(genes)), v2=True, seed=7)
    table = api.evaluate(folder, "pbmc-celltypes", out=tmp_path / "eval", folds=3, allow_pickle=True,
                         probes__kinds=["logreg"], cell_baselines__run=["pca_logreg", "pca_knn"],
                         explain__enabled=False, cache_dir=str(tmp_path / "cache"))
    names = set(table["method"])
    assert {"probe-logreg-mean", "probe-logreg-cls", "probe-knn-mean", "control-probe-logreg-mean",
            "baseline-pca_logreg", "baseline-pca_knn"} <= names
    task = table.attrs["results"]["tasks"][0]
    assert task["modality"] == "cells" and task["verdict"]["sentence"] and task["pretraining_gain"]
    assert {r["embedding"] for r in task["tables"][0]["rows"]} >= {"baseline-pca", "biofm-mean", "biofm-cls"}
    by_name = {m["name"]: m for m in task["methods"]}
    model, twin = by_name["probe-logreg-mean"], by_name["control-probe-logreg-mean"]
    assert [f["mcc"] for f in model["per_fold"]] != [f["mcc"] for f in twin["per_fold"]]  # its own weights
