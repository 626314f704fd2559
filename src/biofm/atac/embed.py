"""Cell embeddings from a biofm ATAC model: every layer, mean-pooled and `<cls>`, cached.

A file's peaks are matched to the model's by coordinates (`PeakVocab.align`); peaks the model does not
know are dropped and the fraction kept is reported. Peak-token models see each cell as in pretraining
without queries: `<cls>` + its accessible peaks (token type "accessible", genomic position ids), the
token budget applied with the saved seed; the mean is over the cell's peak tokens. Patch-CNN models see
the binarised vector through their CNN; the mean is over the patches. Nothing is hidden.

`biofm embed` on an `.h5ad` writes a NEW h5ad (the input is never modified) with the chosen layer's
embedding in `obsm["X_biofm"]` (mean-pooled) and `obsm["X_biofm_cls"]`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from biofm.atac.objectives import ATAC_FILE, PatchEmbedder, encode_patches, load_patcher
from biofm.atac.tokenize import ACCESSIBLE, PeakVocab, aligned_binary, budget, pack_rows
from biofm.errors import BiofmError
from biofm.io.atomic import atomic_path, write_json
from biofm.io.files import cache_root, file_fingerprint
from biofm.models.device import autocast
from biofm.progress import tracked


@dataclass
class AtacModel:
    model: Any  # BertForMaskedLM, eval mode
    vocab: PeakVocab
    info: dict[str, Any]  # biofm_atac.json
    patcher: PatchEmbedder | None  # patch_cnn only
    path: Path

    @property
    def design(self) -> str:
        return str(self.info["design"])


def load_atac_model(model_dir: str | Path) -> AtacModel:
    """The encoder (biofm's one loader: checked folder, strict weights), its peak vocabulary, its settings
    and, for the patch design, its CNN (strictly, from the heads file)."""
    from biofm.models.load import load_pretrained, resolve_model_dir

    path = resolve_model_dir(model_dir)
    if not (path / ATAC_FILE).is_file():
        raise BiofmError(f"{path}: not a biofm ATAC model (no {ATAC_FILE})")
    try:
        info = json.loads((path / ATAC_FILE).read_text())
        design = info["design"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BiofmError(f"{path / ATAC_FILE}: unreadable ({exc})") from None
    if design not in ("peak_tokens", "patch_cnn"):
        raise BiofmError(f"{path / ATAC_FILE}: unknown design {design!r}")
    model = load_pretrained(path)
    model.eval()
    vocab = PeakVocab.load(path)
    patcher = load_patcher(path, info, model.config.hidden_size) if design == "patch_cnn" else None
    if patcher is not None:
        patcher = patcher.to(model.device)
    return AtacModel(model, vocab, info, patcher, path)


@torch.inference_mode()
def atac_layer_embeddings(am: AtacModel, X: sp.csr_matrix, keys: np.ndarray, *,
                          batch_size: int = 64) -> dict[str, np.ndarray]:
    """{"mean": [n, layers+1, H], "cls": [n, layers+1, H]} float32 for the cells (rows) of binary CSR X,
    whose columns are the model's peaks. `keys` (one per cell) seed the token budget's sampling."""
    cfg = am.model.config
    n = X.shape[0]
    mean = np.zeros((n, cfg.num_hidden_layers + 1, cfg.hidden_size), dtype=np.float32)
    cls = np.zeros_like(mean)
    vocab = am.vocab
    order = np.arange(n)
    dev = am.model.device
    if am.design == "peak_tokens":
        X = budget(X, keys, int(vocab.settings["max_peaks"]), int(vocab.settings.get("seed", 0)))
        positions = vocab.positions()[0]
        order = np.argsort(np.diff(X.indptr), kind="stable")  # length-sorted batches: little padding
    for start in tracked(range(0, n, batch_size), f"embedding {n:,} cells", unit="batches"):
        rows = order[start:start + batch_size]
        cells = [X.indices[X.indptr[r]:X.indptr[r + 1]].astype(np.int64) for r in rows]
        if am.design == "peak_tokens":
            packed = pack_rows([(c, np.full(len(c), ACCESSIBLE), np.full(len(c), -1)) for c in cells], positions,
                               vocab.pad_id, vocab.cls_id, vocab.offset)
            with autocast(dev):
                out = am.model.bert(**{k: torch.from_numpy(packed[k]).to(dev)
                                       for k in ("input_ids", "token_type_ids", "position_ids", "attention_mask")},
                                    output_hidden_states=True)
            weight = torch.from_numpy(packed["attention_mask"]).to(dev).clone()  # [B, L]
            weight[:, 0] = False  # the cell's peaks, not <cls>
        else:
            assert am.patcher is not None
            size, n_p = int(am.info["patch_size"]), int(am.info["n_patches"])
            x = torch.zeros((len(rows), n_p * size))
            for r, c in enumerate(cells):
                x[r, torch.from_numpy(c)] = 1.0
            with autocast(dev):
                out = encode_patches(am.model, am.patcher(x.to(dev)), output_hidden_states=True)
            weight = torch.ones((len(rows), n_p + 1), dtype=torch.bool, device=dev)
            weight[:, 0] = False
        states = torch.stack(out.hidden_states, dim=1).float()  # [B, layers+1, L, H]
        w = weight[:, None, :, None].float()
        mean[rows] = ((states * w).sum(2) / w.sum(2).clamp_min(1)).cpu().numpy()
        cls[rows] = states[:, :, 0, :].cpu().numpy()
    return {"mean": mean, "cls": cls}


def _read(am: AtacModel, h5ad: str | Path, layer: str | None, peak_column: str | None) -> tuple[sp.csr_matrix, float]:
    from biofm.atac.peaks import read_peaks

    return aligned_binary(read_peaks(h5ad, layer=layer, peak_column=peak_column), am.vocab, str(h5ad))


def _cache_key(model_dir: Path, h5ad: str, rows: np.ndarray, extra: Any) -> str:
    h = hashlib.sha256()
    for f in [*sorted(model_dir.glob("*.safetensors")), model_dir / "peak_vocab.json"]:
        h.update(file_fingerprint(f).encode())
    h.update(file_fingerprint(h5ad).encode())
    h.update(np.asarray(rows, dtype=np.int64).tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def task_embeddings(model_dir: str | Path, task: Any, *, batch_size: int = 64,
                    cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """Embeddings of an ATAC task's cells (rows `task.inputs` of the h5ad in `task.meta`), cached by content
    (model weights and vocabulary, the file, the rows)."""
    from biofm.models.load import resolve_model_dir

    model_dir = resolve_model_dir(model_dir)
    meta = task.meta
    rows = np.asarray(task.inputs, dtype=np.int64)
    key = _cache_key(model_dir, meta["h5ad"], rows, [meta.get("layer"), meta.get("peak_column")])
    dest = cache_root(cache_dir) / f"atacemb-{key}"
    if (dest / "meta.json").exists():
        return {p.stem: np.load(p, mmap_mode="r") for p in dest.glob("*.npy")}
    am = load_atac_model(model_dir)
    X, coverage = _read(am, meta["h5ad"], meta.get("layer"), meta.get("peak_column"))
    emb = atac_layer_embeddings(am, X[rows], rows, batch_size=batch_size)
    with atomic_path(dest, is_dir=True) as tmp:
        for pooling, arr in emb.items():
            np.save(tmp / f"{pooling}.npy", arr)
        write_json(tmp / "meta.json", {"model": str(model_dir), "h5ad": str(meta["h5ad"]), "n": len(rows),
                                       "peak_coverage": coverage})
    return emb


def embed_h5ad(model_dir: str | Path, src: str | Path, out: str | Path, *, layer: int = -1,
               layer_name: str | None = None, gene_column: str | None = None, peak_column: str | None = None,
               batch_size: int = 64) -> tuple[int, int, float]:
    """Write a copy of `src` with obsm["X_biofm"] (mean-pooled) and obsm["X_biofm_cls"] of `layer`.

    `layer_name`: the h5ad layer with the counts (default X); `peak_column` (or `gene_column`, the name
    `biofm embed --gene-column` passes): the var column with the peak names. Returns (cells, dimensions,
    fraction of the file's peaks the model knows)."""
    import anndata as ad

    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise BiofmError(f"{out}: the output would overwrite the input; biofm never modifies its input")
    if out.suffix != ".h5ad":
        raise BiofmError(f"{out}: the output of a cell embedding is an .h5ad file")
    am = load_atac_model(model_dir)
    X, coverage = _read(am, src, layer_name, peak_column or gene_column)
    n_layers = am.model.config.num_hidden_layers + 1
    if not -n_layers <= layer < n_layers:
        raise BiofmError(f"--layer {layer}: the model has layers 0..{n_layers - 1} (0 = embeddings)")
    emb = atac_layer_embeddings(am, X, np.arange(X.shape[0]), batch_size=batch_size)
    adata = ad.read_h5ad(src)  # a fresh in-memory copy; the file itself is only read
    adata.obsm["X_biofm"] = np.ascontiguousarray(emb["mean"][:, layer])
    adata.obsm["X_biofm_cls"] = np.ascontiguousarray(emb["cls"][:, layer])
    adata.uns["biofm"] = {"model": str(model_dir), "layer": int(layer % n_layers), "design": am.design,
                          "pooling": "mean (X_biofm), cls (X_biofm_cls)", "peak_coverage": float(coverage)}
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return adata.n_obs, int(emb["mean"].shape[2]), coverage
