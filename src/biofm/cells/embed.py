"""Cell embeddings from a biofm cell model: every layer, mean-pooled and <cls>, cached.

A cell is tokenised with the settings saved beside the model (`cell_tokenizer.json`), so a cell
embeds the same way it was seen in pretraining; values enter as BERT token types (no value is hidden).
`biofm embed` on an `.h5ad` writes a NEW h5ad (the input is never modified) with the chosen layer's
embedding in `obsm["X_biofm"]` (mean-pooled) and `obsm["X_biofm_cls"]`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biofm.cells.objectives import CELL_FILE, NO_VALUE, VALUE_OFFSET
from biofm.cells.tokenize import CellTokenizer
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path
from biofm.io.files import file_fingerprint
from biofm.models.device import autocast
from biofm.models.mlm import pool_layers
from biofm.progress import tracked


def load_cell_model(model_dir: str | Path) -> tuple[Any, CellTokenizer, dict[str, Any]]:
    """The encoder (through biofm's one loader: checked folder, strict weights), its cell tokenizer and
    the cell settings (biofm_cell.json)."""
    from biofm.models.load import load_pretrained, resolve_model_dir

    path = resolve_model_dir(model_dir)
    if not (path / CELL_FILE).exists():
        raise BiofmError(f"{path}: not a biofm cell model (no {CELL_FILE})")
    info = json.loads((path / CELL_FILE).read_text())
    model = load_pretrained(path)
    model.eval()
    return model, CellTokenizer.load(path), info


@torch.inference_mode()
def cell_layer_embeddings(model, tok: CellTokenizer, X, genes: np.ndarray, *, batch_size: int = 64,
                          seed: int = 0) -> dict[str, np.ndarray]:
    """{"mean": [n, layers+1, H], "cls": [n, layers+1, H]} float32 for the cells (rows) of X."""
    n = X.shape[0]
    layers, hidden = model.config.num_hidden_layers + 1, model.config.hidden_size
    mean = np.zeros((n, layers, hidden), dtype=np.float32)
    cls = np.zeros_like(mean)
    rank_mode = tok.cfg.mode == "rank_value"
    dev = model.device
    for start in tracked(range(0, n, batch_size), f"embedding {n:,} cells", unit="batches"):
        rows = np.arange(start, min(start + batch_size, n))
        cols = tok.tokenize(X[rows], genes, rows, seed=seed)
        real = cols["gene_ids"] != tok.vocab.pad_id
        width = int(np.flatnonzero(real.any(0)).max(initial=0)) + 1  # cut the padding columns
        ids = torch.from_numpy(cols["gene_ids"][:, :width].astype(np.int64)).to(dev)
        values = cols["values"][:, :width].astype(np.int64)
        attention = ids != tok.vocab.pad_id
        kw: dict[str, Any] = {}
        if not rank_mode:
            kw["token_type_ids"] = torch.from_numpy(np.where(values >= 0, values + VALUE_OFFSET, NO_VALUE)).to(dev)
        with autocast(dev):
            out = model.bert(input_ids=ids, attention_mask=attention, output_hidden_states=True, **kw)
        pooled, first = pool_layers(out.hidden_states, attention)  # [B, layers+1, H] each, float32
        mean[rows], cls[rows] = pooled.cpu().numpy(), first.cpu().numpy()
    return {"mean": mean, "cls": cls}


def task_embeddings(model_dir: str | Path, task, *, batch_size: int = 64,
                    cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """Embeddings of a cell task's cells (rows `task.inputs` of its h5ad), cached by content."""
    from biofm.cells.h5ad import read_counts
    from biofm.eval.embeddings import cached_layers
    from biofm.models.load import resolve_model_dir

    model_dir = resolve_model_dir(model_dir)
    meta = task.meta
    rows = np.asarray(task.inputs, dtype=np.int64)
    coverage = [0.0]

    def compute() -> dict[str, np.ndarray]:
        model, tok, _ = load_cell_model(model_dir)
        counts = read_counts(meta["h5ad"], layer=meta.get("layer"), gene_column=meta.get("gene_column"))
        coverage[0] = tok.vocab.coverage(counts.genes)
        if coverage[0] == 0:
            raise BiofmError(f"{meta['h5ad']}: none of its genes is in the model's vocabulary ({model_dir}); are the "
                             f"gene ids of the same kind (symbols vs Ensembl ids, data.gene_column)?")
        return cell_layer_embeddings(model, tok, counts.X[rows], counts.genes, batch_size=batch_size)

    key = [file_fingerprint(meta["h5ad"]), rows, [meta.get("layer"), meta.get("gene_column")]]
    return cached_layers("cellemb", model_dir, key, compute, {"h5ad": str(meta["h5ad"]), "n": len(rows)},
                         cache_dir)


def embed_adata(model_dir: str | Path, adata: Any, *, key_added: str = "X_biofm", layer: int = -1,
                layer_name: str | None = None, gene_column: str | None = None, batch_size: int = 64,
                name: str = "AnnData") -> tuple[int, int, float]:
    """Embed the cells of an in-memory AnnData into it: obsm[key_added] (mean-pooled) and
    obsm[key_added + "_cls"] of `layer`, and what made them in uns["biofm"]. The counts are read with the
    same checks as a file's (`name` in messages). Returns (cells, dimensions, fraction of the genes in the
    model's vocabulary)."""
    from biofm.cells.h5ad import read_counts

    model, tok, _ = load_cell_model(model_dir)
    counts = read_counts(name, layer=layer_name, gene_column=gene_column, adata=adata)
    coverage = tok.vocab.coverage(counts.genes)
    if coverage == 0:
        raise BiofmError(f"{name}: none of its genes is in the model's vocabulary; pass --gene-column for Ensembl ids")
    n_layers = model.config.num_hidden_layers + 1
    if not -n_layers <= layer < n_layers:
        raise BiofmError(f"--layer {layer}: the model has layers 0..{n_layers - 1} (0 = embeddings)")
    emb = cell_layer_embeddings(model, tok, counts.X, counts.genes, batch_size=batch_size)
    adata.obsm[key_added] = np.ascontiguousarray(emb["mean"][:, layer])
    adata.obsm[f"{key_added}_cls"] = np.ascontiguousarray(emb["cls"][:, layer])
    adata.uns["biofm"] = {"model": str(model_dir), "layer": int(layer % n_layers), "key": key_added,
                          "pooling": f"mean ({key_added}), cls ({key_added}_cls)", "gene_coverage": float(coverage)}
    return adata.n_obs, int(emb["mean"].shape[2]), coverage


def embed_into_copy(src: str | Path, out: str | Path,
                    embed: Callable[[Any, str], tuple[int, int, float]]) -> tuple[int, int, float]:
    """Read `src` into memory, let `embed(adata, name)` add its embeddings, and write the copy to `out` (a new
    .h5ad, atomically; the input is only read). The checks and one-line errors of every cell model's
    `embed_h5ad` (biofm's and Geneformer's)."""
    import anndata as ad

    from biofm.cells.h5ad import _check_file

    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise BiofmError(f"{out}: the output would overwrite the input; biofm never modifies its input")
    if out.suffix != ".h5ad":
        raise BiofmError(f"{out}: the output of a cell embedding is an .h5ad file")
    _check_file(src)
    try:
        adata = ad.read_h5ad(src)  # a fresh in-memory copy; the file itself is only read
    except Exception as exc:  # anndata raises many kinds for a damaged file
        raise BiofmError(f"{src}: not a readable AnnData .h5ad file ({str(exc).splitlines()[0]})") from None
    result = embed(adata, str(src))
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return result


def embed_h5ad(model_dir: str | Path, src: str | Path, out: str | Path, *, layer: int = -1,
               layer_name: str | None = None, gene_column: str | None = None,
               batch_size: int = 64) -> tuple[int, int, float]:
    """Write a copy of `src` with obsm["X_biofm"] (mean-pooled) and obsm["X_biofm_cls"] of `layer`.

    Returns (cells, dimensions, fraction of the file's genes in the model's vocabulary)."""
    return embed_into_copy(src, out, lambda adata, name: embed_adata(
        model_dir, adata, layer=layer, layer_name=layer_name, gene_column=gene_column, batch_size=batch_size,
        name=name))


def card_usage(model_dir: str | Path) -> list[str]:
    """Model-card lines: how a cell becomes input ids and token types for this model (biofm_cell.json)."""
    info = json.loads((Path(model_dir) / CELL_FILE).read_text())
    types = info.get("token_types", {})
    if info.get("mode") == "rank_value":
        return ["A cell is `<cls>` followed by its expressed genes' ids (`gene_vocab.json`), ranked by "
                "normalised expression (Geneformer's rank-value encoding); no token types."]
    return [f"A cell is `<cls>` followed by gene ids (`gene_vocab.json`); each gene's value enters as its "
            f"`token_type_ids`: {types.get('first_bin', VALUE_OFFSET)} + the value bin "
            f"(0..{info.get('n_bins', '?')} - 1; "
            f"bins in `cell_tokenizer.json`), {types.get('no_value', NO_VALUE)} for <cls> and padding, "
            f"{types.get('hidden_value', 1)} for a hidden value. Position embeddings are zero: a cell is a set. "
            "`biofm embed --model RUN --input cells.h5ad --out new.h5ad` does all of this."]
