"""Saved ATAC models: stock transformers loads them, biofm reloads them to the same numbers, cells embed
into a new h5ad (the input untouched) and into cached task embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import yaml
from transformers import AutoModel

from biofm.atac.embed import atac_layer_embeddings, embed_h5ad, load_atac_model, task_embeddings
from biofm.atac.tokenize import ACCESSIBLE, aligned_binary, budget, pack_rows
from biofm.cli import main as _main
from biofm.errors import BiofmError
from biofm.eval.types import Task

N_CELLS = 60


def _write(path: Path, names_colon: bool = False, shuffle_seed: int = 0) -> Path:
    """60 cells x 90 peaks (two cell types), columns shuffled; optionally `chr:start-end` names."""
    rng = np.random.default_rng(0)
    kind = rng.integers(0, 2, N_CELLS)
    p = np.full((N_CELLS, 90), 0.04)
    p[kind == 0, :30] = 0.6
    p[kind == 1, 30:60] = 0.6
    X = (rng.random((N_CELLS, 90)) < p).astype(np.float32)
    X[np.arange(N_CELLS), 60 + np.arange(N_CELLS) % 30] = 2
    chrom = np.array(["chr1"] * 50 + ["chr2"] * 40)
    start = np.concatenate([np.arange(50), np.arange(40)]) * 30_000 + 100
    names = [f"{c}:{s}-{s + 500}" if names_colon else f"{c}_{s}_{s + 500}" for c, s in zip(chrom, start, strict=True)]
    order = np.random.default_rng(shuffle_seed).permutation(90)
    obs = pd.DataFrame({"cell_type": np.where(kind == 0, "A", "B")}, index=[f"c{i}" for i in range(N_CELLS)])
    ad.AnnData(sp.csr_matrix(X[:, order]), obs=obs, var=pd.DataFrame(index=np.array(names)[order])).write_h5ad(path)
    return path


def _pretrain(tmp: Path, name: str, design: str, objectives: dict) -> Path:
    cfg = {"name": name, "run_dir": str(tmp / name), "modality": "atac", "design": design,
           "data": {"h5ad": [str(tmp / "cells.h5ad")], "val_fraction": 0.2},
           "tokenizer": {"max_peaks": 24}, "patches": {"conv_strides": [5, 2], "conv_channels": 8},
           "objectives": objectives, "model": {"preset": "tiny"},
           "train": {"steps": 6, "global_batch_tokens": 8 * 25, "micro_batch_size": 8, "warmup_steps": 2,
                     "eval_every": 6, "checkpoint_every": 6, "threads": 2}}
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as e:
        _main(["pretrain", str(tmp / f"{name}.yaml")])
    assert e.value.code in (0, None)
    return tmp / name / "model"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("atacemb")
    _write(tmp / "cells.h5ad")
    return tmp, {"peak_tokens": _pretrain(tmp, "pt", "peak_tokens", {"masked_peak": 1.0, "contrastive": 0.1}),
                 "patch_cnn": _pretrain(tmp, "pc", "patch_cnn", {"masked_patch": 1.0})}


def _cells(tmp: Path, model_dir: Path) -> sp.csr_matrix:
    from biofm.atac.peaks import read_peaks

    return aligned_binary(read_peaks(tmp / "cells.h5ad"), load_atac_model(model_dir).vocab, "f")[0]


def test_stock_transformers_gives_biofm_embeddings_peak_tokens(models):
    tmp, dirs = models
    stock = AutoModel.from_pretrained(dirs["peak_tokens"], use_safetensors=True).eval()  # BertModel, no biofm code
    assert stock.config.model_type == "bert" and stock.config.type_vocab_size == 3
    am = load_atac_model(dirs["peak_tokens"])
    X = _cells(tmp, dirs["peak_tokens"])
    emb = atac_layer_embeddings(am, X, np.arange(N_CELLS), batch_size=16)
    assert emb["mean"].shape == (N_CELLS, 3, 128) and np.isfinite(emb["mean"]).all()
    # the same cells through the stock class: <cls> + peaks (budget applied), type 1, genomic position ids
    kept = budget(X, np.arange(N_CELLS), 24, 0)
    cells = [kept[r].indices.astype(np.int64) for r in range(N_CELLS)]
    packed = pack_rows([(c, np.full(len(c), ACCESSIBLE), np.full(len(c), -1)) for c in cells],
                       am.vocab.positions()[0], am.vocab.pad_id, am.vocab.cls_id, am.vocab.offset)
    with torch.no_grad():
        out = stock(**{k: torch.from_numpy(packed[k]) for k in ("input_ids", "token_type_ids", "position_ids",
                                                                "attention_mask")})
    np.testing.assert_allclose(emb["cls"][:, -1], out.last_hidden_state[:, 0].numpy(), atol=1e-5)
    # reloading gives the same numbers
    again = atac_layer_embeddings(load_atac_model(dirs["peak_tokens"]), X, np.arange(N_CELLS), batch_size=7)
    np.testing.assert_allclose(again["mean"], emb["mean"], atol=1e-5)


def test_stock_transformers_gives_biofm_embeddings_patch_cnn(models):
    tmp, dirs = models
    from biofm.atac.objectives import HEADS_FILE

    stock = AutoModel.from_pretrained(dirs["patch_cnn"], use_safetensors=True).eval()
    am = load_atac_model(dirs["patch_cnn"])
    assert am.patcher is not None and (dirs["patch_cnn"] / HEADS_FILE).is_file()
    X = _cells(tmp, dirs["patch_cnn"])
    emb = atac_layer_embeddings(am, X, np.arange(N_CELLS))
    x = torch.from_numpy(np.pad(X.toarray(), ((0, 0), (0, 0))))  # 90 peaks = 9 patches of 10
    with torch.no_grad():
        patches = am.patcher(x)
        cls = stock.embeddings.word_embeddings.weight[2].expand(N_CELLS, 1, -1)
        out = stock(inputs_embeds=torch.cat([cls, patches], 1))
    np.testing.assert_allclose(emb["mean"][:, -1], out.last_hidden_state[:, 1:].mean(1).numpy(), atol=1e-5)


def test_peaks_match_by_coordinates_not_by_column(models, tmp_path):
    tmp, dirs = models
    other = _write(tmp_path / "other.h5ad", names_colon=True, shuffle_seed=5)
    a = embed_h5ad(dirs["peak_tokens"], tmp / "cells.h5ad", tmp_path / "a.h5ad")
    b = embed_h5ad(dirs["peak_tokens"], other, tmp_path / "b.h5ad")
    assert a == b == (N_CELLS, 128, 1.0)
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "a.h5ad").obsm["X_biofm"],
                               ad.read_h5ad(tmp_path / "b.h5ad").obsm["X_biofm"], atol=1e-5)


def test_embed_h5ad_writes_a_new_file_and_leaves_the_input(models, capsys):
    tmp, dirs = models
    src = tmp / "cells.h5ad"
    before = src.read_bytes()
    out = tmp / "emb.h5ad"
    with pytest.raises(SystemExit) as e:
        _main(["embed", "--model", str(dirs["patch_cnn"].parent), "--input", str(src), "--out", str(out)])
    assert e.value.code in (0, None)
    assert src.read_bytes() == before
    adata = ad.read_h5ad(out)
    assert adata.obsm["X_biofm"].shape == (N_CELLS, 128) and adata.obsm["X_biofm_cls"].shape == (N_CELLS, 128)
    assert adata.uns["biofm"]["design"] == "patch_cnn" and list(adata.obs["cell_type"]) == list(
        ad.read_h5ad(src).obs["cell_type"])
    with pytest.raises(SystemExit) as e:
        _main(["embed", "--model", str(dirs["patch_cnn"]), "--input", str(src), "--out", str(src)])
    assert e.value.code == 2
    assert src.read_bytes() == before
    with pytest.raises(BiofmError, match=r"--layer 3: the model has layers 0\.\.2"):
        embed_h5ad(dirs["patch_cnn"], src, tmp / "x.h5ad", layer=3)


def test_task_embeddings_are_cached(models, tmp_path):
    tmp, dirs = models
    rows = [3, 10, 4, 50]
    task = Task(name="t", type="classification", inputs=rows, labels=np.array([0, 1, 0, 1]), classes=["A", "B"],
                meta={"h5ad": str(tmp / "cells.h5ad"), "layer": None, "peak_column": None})
    first = task_embeddings(dirs["peak_tokens"], task, cache_dir=str(tmp_path))
    assert first["mean"].shape == (4, 3, 128) and set(first) == {"mean", "cls"}
    full = atac_layer_embeddings(load_atac_model(dirs["peak_tokens"]), _cells(tmp, dirs["peak_tokens"]),
                                 np.arange(N_CELLS))
    np.testing.assert_allclose(first["mean"], full["mean"][rows], atol=1e-5)
    assert len(list(tmp_path.glob("atacemb-*"))) == 1
    second = task_embeddings(dirs["peak_tokens"], task, cache_dir=str(tmp_path))
    assert isinstance(second["mean"], np.memmap)  # read back from the cache
    np.testing.assert_array_equal(np.asarray(second["mean"]), first["mean"])


def test_foreign_model_folder_is_refused(models, tmp_path):
    _, dirs = models
    info = json.loads((dirs["peak_tokens"] / "biofm_atac.json").read_text())
    assert info["design"] == "peak_tokens" and info["main"] == "masked_peak"
    import shutil

    shutil.copytree(dirs["peak_tokens"], tmp_path / "m")
    (tmp_path / "m" / "biofm_atac.json").unlink()  # e.g. a cell or DNA model folder
    with pytest.raises(BiofmError, match="m: not a biofm ATAC model"):
        load_atac_model(tmp_path / "m")
