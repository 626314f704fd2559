"""Geneformer as published: its gene token dictionary, its gene medians, and rank-value encoding of cells.

Layout (ctheodoris/Geneformer): `config.json` (BertForMaskedLM), the weights, and — beside them, in a
`geneformer/` folder of the model folder or of its parent (the repository keeps models in subfolders),
or one folder deeper there — `token_dictionary*.pkl` (gene id -> token id; `<pad>`, `<mask>`, and in
the 2024 models `<cls>`, `<eos>`) and `gene_median_dictionary*.pkl` (gene id -> the median of the
gene's non-zero normalised expression over the pretraining corpus). When several dictionaries are
present, the one whose ids fill the model's vocabulary is used.

The dictionaries are Python pickles, and unpickling can run code: biofm reads a pickle only when asked
(`--allow-pickle` / `allow_pickle=True`), and even then only plain data (dicts of names and numbers;
anything else in the pickle is refused). A JSON copy (`token_dictionary.json`, ...) needs no flag and is
preferred when both exist.

Rank-value encoding (Geneformer's TranscriptomeTokenizer): a cell's counts are divided by its total
count over all genes, times 10,000, then each gene by its median; genes in both dictionaries with a
non-zero count are ranked by that value, highest first (ties by token id, so it is deterministic), and
the top ones are the cell's tokens: `<cls>` first and `<eos>` last when the dictionary has them (as the
2024 models were trained), the genes filling the rest of the model's positions (2,048 for the 2021
models). The total-count scaling does not change a cell's ranks; it is kept to match Geneformer.

Embeddings are every layer's mean over the cell's tokens, and its `<cls>` state when there is one.
`biofm evaluate` reaches them through the cells verb `published_embeddings`; `embed_h5ad` / `embed_adata`
serve biofm's own cell models (biofm_cell.json) and Geneformer alike.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from biofm.errors import BiofmError

if TYPE_CHECKING:
    from biofm.eval.evaluate import EvaluateConfig
    from biofm.eval.types import Task

TOKENS, MEDIANS = "token_dictionary", "gene_median_dictionary"
NORM_TOTAL = 10_000.0  # Geneformer: counts per 10,000 before dividing by the gene's median
ENCODING = "geneformer-rank-value-1"  # part of the embedding cache key


# ---------------------------------------------------------------------------------------- dictionaries


class _DataUnpickler(pickle.Unpickler):
    """Unpickles plain data only: builtin containers and numbers, numpy scalars. Any other class a pickle
    names (the way a pickle runs code) is refused."""

    _ALLOWED = frozenset({("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "int",
                                                     "float", "bool")}
                         | {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                            ("numpy", "dtype"), ("collections", "OrderedDict")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}")


def read_dictionary(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """A gene dictionary from JSON, or from a pickle when `allow_pickle`; BiofmError naming the file."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise BiofmError(f"{path}: not a readable JSON dictionary ({exc})") from None
    else:
        if not allow_pickle:
            raise BiofmError(f"{path}: a Python pickle, which biofm reads only with --allow-pickle (allow_pickle=True) "
                             f"because unpickling a file can run code; pass it if you trust where the file came from, "
                             f"or put a JSON copy beside it ({path.with_suffix('.json').name})")
        try:
            with path.open("rb") as fh:
                data = _DataUnpickler(fh).load()
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
            raise BiofmError(f"{path}: refused or unreadable pickle ({exc}); biofm reads only plain data (dicts of "
                             f"names and numbers) from a pickle, even with --allow-pickle") from None
    if not isinstance(data, dict) or not data:
        raise BiofmError(f"{path}: expected a non-empty dictionary of gene ids, found {type(data).__name__}")
    return data


def _search_dirs(folder: Path) -> list[Path]:
    """Where Geneformer's dictionaries sit relative to a model folder, nearest first."""
    dirs = [folder, folder / "geneformer", folder.parent / "geneformer"]
    nested = [d for g in dirs[1:] if g.is_dir() for d in sorted(g.iterdir()) if d.is_dir()]
    return [*dirs, folder.parent, *nested]


def _candidates(folder: Path) -> list[tuple[Path, Path | None]]:
    """(token dictionary, its median dictionary or None) pairs, JSON before pickle, nearest folder first."""
    out: list[tuple[Path, Path | None]] = []
    seen: set[tuple[Path, str]] = set()
    for d in _search_dirs(folder):
        if not d.is_dir():
            continue
        for ext in (".json", ".pkl"):
            for tokens in sorted(d.glob(f"{TOKENS}*{ext}")):
                suffix = tokens.stem[len(TOKENS):]  # e.g. "_gc104M"
                if (d, suffix) in seen:
                    continue  # the JSON copy of this dictionary was taken
                seen.add((d, suffix))
                medians = next((m for e in (".json", ".pkl") if (m := d / f"{MEDIANS}{suffix}{e}").is_file()), None)
                out.append((tokens, medians))
    return out


def _is_biofm(cfg: dict[str, Any]) -> bool:
    return bool(cfg.get("biofm_modality") or cfg.get("biofm_preset"))


def published_family(folder: Path, cfg: dict[str, Any]) -> str | None:
    """"Geneformer" for a BERT checkpoint with a Geneformer token dictionary near it; else None. Verb
    `published_family` (nothing is read but file names)."""
    if _is_biofm(cfg) or cfg.get("model_type") != "bert" or not _candidates(folder):
        return None
    return "Geneformer (rank-value gene tokens)"


@dataclass
class GeneformerTokenizer:
    """Geneformer's dictionaries and the model's positions: turns count rows into rank-value token rows."""

    tokens: dict[str, int]  # gene id or special -> token id
    medians: dict[str, float]  # gene id -> corpus median
    max_len: int  # positions per cell, special tokens included
    source: Path = field(default_factory=Path)

    @property
    def pad_token_id(self) -> int:
        return self.tokens["<pad>"]

    @property
    def mask_token_id(self) -> int:
        return self.tokens["<mask>"]

    @property
    def cls_token_id(self) -> int | None:
        return self.tokens.get("<cls>")

    @property
    def eos_token_id(self) -> int | None:
        return self.tokens.get("<eos>")

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps([sorted(self.tokens.items()), sorted(self.medians.items()), self.max_len],
                                      default=str).encode())
        return h.hexdigest()[:20]

    def gene_columns(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per column gene: token id (-1 when unusable) and median (1.0 when unusable). A gene is usable
        when both dictionaries hold it with a positive finite median (Geneformer's gene list is the
        median dictionary's keys)."""
        tok = np.full(len(genes), -1, dtype=np.int64)
        med = np.ones(len(genes), dtype=np.float64)
        for j, g in enumerate(np.asarray(genes, dtype=object).tolist()):
            t, m = self.tokens.get(g), self.medians.get(g)
            if t is not None and m is not None and np.isfinite(m) and m > 0 and not str(g).startswith("<"):
                tok[j], med[j] = t, m
        return tok, med

    def coverage(self, genes: np.ndarray) -> float:
        """Fraction of the given genes Geneformer can encode."""
        return float((self.gene_columns(genes)[0] >= 0).mean()) if len(genes) else 0.0

    def encode(self, X: sp.spmatrix, genes: np.ndarray, columns: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids [n, L], attention_mask [n, L]) of the rows of counts X [n, G] (see the module doc);
        `columns`: `gene_columns(genes)` when already computed (one lookup per file, not per batch)."""
        X = sp.csr_matrix(X)
        n = X.shape[0]
        tok_col, med_col = columns if columns is not None else self.gene_columns(genes)
        totals = np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()  # over ALL genes, as Geneformer's n_counts
        row = np.repeat(np.arange(n, dtype=np.int64), np.diff(X.indptr))
        keep = (tok_col[X.indices] >= 0) & (X.data > 0)
        row, col, val = row[keep], X.indices[keep], X.data[keep].astype(np.float64)
        value = val / totals[row] * NORM_TOTAL / med_col[col]
        tid = tok_col[col]
        order = np.lexsort((tid, -value, row))  # by cell, then value descending, ties by token id
        per = np.bincount(row, minlength=n)
        rank = np.arange(len(order)) - (np.cumsum(per) - per)[row[order]]
        head = int(self.cls_token_id is not None)
        slots = self.max_len - head - int(self.eos_token_id is not None)
        chosen = order[rank < slots]
        kept = np.minimum(per, slots)
        width = max(1, head + int(kept.max(initial=0)) + int(self.eos_token_id is not None))
        ids = np.full((n, width), self.pad_token_id, dtype=np.int64)
        ids[row[chosen], rank[rank < slots] + head] = tid[chosen]
        if head:
            ids[:, 0] = self.cls_token_id
        if self.eos_token_id is not None:
            ids[np.arange(n), head + kept] = self.eos_token_id
        length = head + kept + int(self.eos_token_id is not None)
        attention = np.arange(width)[None, :] < np.maximum(length, 1)[:, None]  # a cell never attends to nothing
        return torch.from_numpy(ids), torch.from_numpy(attention.astype(np.int64))


def _checked_tokens(path: Path, data: dict[str, Any], vocab_size: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in data.items():
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise BiofmError(f"{path}: entry {k!r} maps to {v!r}, not a token id")
        out[str(k)] = int(v)
    for special in ("<pad>", "<mask>"):
        if special not in out:
            raise BiofmError(f"{path}: no {special} token; not a Geneformer token dictionary")
    top = max(out.values())
    if vocab_size and top >= vocab_size:
        raise BiofmError(f"{path}: token id {top} is outside the model's vocabulary (vocab_size {vocab_size}); this "
                         f"dictionary belongs to another Geneformer model")
    return out


def published_tokenizer(folder: Path, cfg: dict[str, Any], allow_pickle: bool = False) -> GeneformerTokenizer | None:
    """The Geneformer dictionaries near a BERT checkpoint (None for anything else). Verb `published_tokenizer`."""
    if published_family(folder, cfg) is None:
        return None
    vocab_size = int(cfg.get("vocab_size") or 0)
    read: list[tuple[Path, Path | None, dict[str, int]]] = []
    refused: BiofmError | None = None  # a pickle read without the flag: it may be the dictionary that fits
    for t, m in _candidates(folder):
        try:
            read.append((t, m, _checked_tokens(t, read_dictionary(t, allow_pickle), 0)))
        except BiofmError as exc:
            if t.suffix == ".json" or allow_pickle:
                raise
            refused = refused or exc
    fits = [r for r in read if max(r[2].values()) + 1 == vocab_size] or \
           [r for r in read if max(r[2].values()) < vocab_size]
    if refused is not None and not fits:
        raise refused
    tokens_path, medians_path, tokens = (fits or read)[0]
    tokens = _checked_tokens(tokens_path, tokens, vocab_size)
    if medians_path is None:
        raise BiofmError(f"{tokens_path}: no {MEDIANS}{tokens_path.stem[len(TOKENS):]}.json or .pkl beside it; "
                         f"Geneformer's rank-value encoding divides each gene by its corpus median")
    raw = read_dictionary(medians_path, allow_pickle)
    try:
        medians = {str(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise BiofmError(f"{medians_path}: gene medians must be numbers") from None
    max_len = int(cfg.get("max_position_embeddings") or 2048)
    return GeneformerTokenizer(tokens, medians, max_len, tokens_path)


# ---------------------------------------------------------------------------------------- embeddings


@torch.inference_mode()
def layer_embeddings(model: Any, tok: GeneformerTokenizer, X: sp.spmatrix, genes: np.ndarray, *,
                     batch_size: int = 64) -> dict[str, np.ndarray]:
    """{"mean": [n, layers+1, H], and "cls" when the dictionary has <cls>} float32 for the rows of X.
    Cells go through in order of their token count, so a batch holds little padding."""
    from biofm.models.mlm import encoder_of, pool_layers

    X = sp.csr_matrix(X)
    n = X.shape[0]
    layers, hidden = model.config.num_hidden_layers + 1, model.config.hidden_size
    mean = np.zeros((n, layers, hidden), dtype=np.float32)
    cls = np.zeros_like(mean)
    columns = tok.gene_columns(genes)
    usable = columns[0] >= 0
    order = np.argsort(np.asarray((X[:, np.flatnonzero(usable)] > 0).sum(axis=1)).ravel(), kind="stable")
    encoder = encoder_of(model)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        ids, attention = tok.encode(X[rows], genes, columns)
        out = encoder(input_ids=ids, attention_mask=attention, output_hidden_states=True)
        pooled, first = pool_layers(out.hidden_states, attention)  # [B, layers+1, H] each
        mean[rows], cls[rows] = pooled.numpy(), first.numpy()
    return {"mean": mean, **({"cls": cls} if tok.cls_token_id is not None else {})}


def _no_genes(source: str, model_dir: Path | str) -> BiofmError:
    return BiofmError(f"{source}: none of its genes is in Geneformer's dictionaries ({model_dir}); they hold Ensembl "
                      f"gene ids, so give the var column with Ensembl ids (--gene-column, or gene_column: in the task)")


def task_embeddings(task: Task, cfg: EvaluateConfig, model_dir: Path, model: Any, tok: Any) -> dict[str, np.ndarray]:
    """A cell task's embeddings from a Geneformer checkpoint (verb `published_embeddings`), cached by content."""
    from biofm.cells.h5ad import read_counts
    from biofm.eval.embeddings import cached_layers
    from biofm.io.files import file_fingerprint

    if not isinstance(tok, GeneformerTokenizer):
        raise BiofmError(f"{model_dir}: a cell task needs a biofm cell model or a Geneformer checkpoint (its token "
                         f"dictionary and gene medians beside it)")
    meta = task.meta
    rows = np.asarray(task.inputs, dtype=np.int64)

    def compute() -> dict[str, np.ndarray]:
        counts = read_counts(meta["h5ad"], layer=meta.get("layer"), gene_column=meta.get("gene_column"))
        if tok.coverage(counts.genes) == 0:
            raise _no_genes(str(meta["h5ad"]), model_dir)
        return layer_embeddings(model, tok, counts.X[rows], counts.genes, batch_size=cfg.embed_batch_size)

    key = [file_fingerprint(meta["h5ad"]), rows, [meta.get("layer"), meta.get("gene_column")], tok.fingerprint(),
           ENCODING]
    return cached_layers("geneformer", model_dir, key, compute, {"h5ad": str(meta["h5ad"]), "n": len(rows)},
                         cfg.cache_dir)


def _biofm_cell_model(model_dir: str | Path) -> bool:
    from biofm.cells.objectives import CELL_FILE
    from biofm.models.load import resolve_model_dir

    return (resolve_model_dir(model_dir) / CELL_FILE).exists()


def embed_adata(model_dir: str | Path, adata: Any, *, key_added: str = "X_biofm", layer: int = -1,
                layer_name: str | None = None, gene_column: str | None = None, batch_size: int = 64,
                name: str = "AnnData", allow_pickle: bool = False) -> tuple[int, int, float]:
    """Embed an AnnData's cells into it (verb `embed_adata`): a biofm cell model as `biofm.cells.embed` does,
    a Geneformer checkpoint by rank-value encoding: obsm[key_added] (mean) and obsm[key_added + "_cls"] (when
    the model has <cls>) of `layer`. Returns (cells, dimensions, fraction of the genes it can encode)."""
    from biofm.cells import embed as biofm_cells

    if _biofm_cell_model(model_dir):
        return biofm_cells.embed_adata(model_dir, adata, key_added=key_added, layer=layer, layer_name=layer_name,
                                       gene_column=gene_column, batch_size=batch_size, name=name)
    from biofm.cells.h5ad import read_counts
    from biofm.models.load import load_for_embedding

    model, tok = load_for_embedding(model_dir, modality="cells", allow_pickle=allow_pickle)
    if not isinstance(tok, GeneformerTokenizer):
        raise BiofmError(f"{model_dir}: neither a biofm cell model (biofm_cell.json) nor a Geneformer checkpoint "
                         f"(token_dictionary and gene_median_dictionary near it)")
    counts = read_counts(name, layer=layer_name, gene_column=gene_column, adata=adata)
    coverage = tok.coverage(counts.genes)
    if coverage == 0:
        raise _no_genes(name, model_dir)
    n_layers = model.config.num_hidden_layers + 1
    if not -n_layers <= layer < n_layers:
        raise BiofmError(f"--layer {layer}: the model has layers 0..{n_layers - 1} (0 = embeddings)")
    emb = layer_embeddings(model, tok, counts.X, counts.genes, batch_size=batch_size)
    adata.obsm[key_added] = np.ascontiguousarray(emb["mean"][:, layer])
    if "cls" in emb:
        adata.obsm[f"{key_added}_cls"] = np.ascontiguousarray(emb["cls"][:, layer])
    adata.uns["biofm"] = {"model": str(model_dir), "layer": int(layer % n_layers), "key": key_added,
                          "encoding": "Geneformer rank-value", "gene_coverage": float(coverage),
                          "pooling": f"mean ({key_added})" + (f", cls ({key_added}_cls)" if "cls" in emb else "")}
    return adata.n_obs, int(emb["mean"].shape[2]), coverage


def embed_h5ad(model_dir: str | Path, src: str | Path, out: str | Path, *, layer: int = -1,
               layer_name: str | None = None, gene_column: str | None = None, batch_size: int = 64,
               allow_pickle: bool = False) -> tuple[int, int, float]:
    """Write a copy of `src` with the cells' embeddings (verb `embed_h5ad`; see `embed_adata`); the input is
    never modified."""
    from biofm.cells import embed as biofm_cells

    if _biofm_cell_model(model_dir):
        return biofm_cells.embed_h5ad(model_dir, src, out, layer=layer, layer_name=layer_name,
                                      gene_column=gene_column, batch_size=batch_size)
    return biofm_cells.embed_into_copy(src, out, lambda adata, name: embed_adata(
        model_dir, adata, layer=layer, layer_name=layer_name, gene_column=gene_column, batch_size=batch_size,
        name=name, allow_pickle=allow_pickle))
