"""Cell embeddings and cross-modal predictions from a biofm multiome model.

The model folder holds the stock BertForMaskedLM (`AutoModel.from_pretrained` loads its encoder without
remote code), the tokenizer with `multiome_vocab.json` (features, value classes, held-out cells) and the
heads file (value embedding, per-modality heads and per-feature offsets). A file's features are matched to
the model's by name; values are computed per cell over all of the file's features (RNA library size) and
then restricted, so a cell tokenises as in pretraining (same token budget, same seed).

Embeddings (nothing hidden): `mean` / `cls` of the joint input (both modalities), and `mean_<role>` of each
modality's own input, every layer: [n, layers + 1, H].

Cross-modal prediction: the source modality's tokens, then every feature of the target as a query (in
chunks; queries see only the context, so chunking changes nothing); RNA and protein predictions are the
expected value under the predicted classes (class centres of the training cells), peaks the probability
of being accessible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors.torch import load_file
from torch import nn

from biofm.errors import BiofmError
from biofm.multiome.data import Paired, values
from biofm.multiome.objectives import HEADS_FILE, INFO_FILE, _head, encode
from biofm.multiome.tokenize import MultiomeVocab, Seq, cell_rows, context, pack
from biofm.train.objectives import load_strictly


@dataclass
class MultiomeModel:
    model: Any  # BertForMaskedLM, eval mode
    vocab: MultiomeVocab
    value_embedding: nn.Embedding
    heads: nn.ModuleDict
    priors: dict[str, torch.Tensor]
    path: Path


def load_multiome_model(model_dir: str | Path) -> MultiomeModel:
    from biofm.models.load import load_pretrained, resolve_model_dir

    path = resolve_model_dir(model_dir)
    if not (path / INFO_FILE).is_file():
        raise BiofmError(f"{path}: not a biofm multiome model (no {INFO_FILE})")
    model = load_pretrained(path).eval()
    vocab = MultiomeVocab.load(path)
    file = path / HEADS_FILE
    if not file.is_file():
        raise BiofmError(f"{file}: missing (the heads of a biofm multiome model)")
    saved = load_file(str(file))
    hidden, nb = model.config.hidden_size, vocab.n_bins
    value_embedding = nn.Embedding(nb + 2, hidden)
    load_strictly(value_embedding, {"weight": saved["value_embedding.weight"]}, file)
    heads = nn.ModuleDict({r: _head(hidden, 1 if r == "atac" else nb) for r in vocab.roles})
    load_strictly(heads, {k[len("heads."):]: v for k, v in saved.items() if k.startswith("heads.")}, file)
    priors = {r: saved[f"priors.{r}"] for r in vocab.roles}
    return MultiomeModel(model, vocab, value_embedding.eval(), heads.eval(), priors, path)


def model_classes(vocab: MultiomeVocab, paired: Paired) -> dict[str, Any]:
    """Each role's value classes over the MODEL's features, matched by name (absent features read as 0)."""
    out: dict[str, Any] = {}
    for role, f in vocab.features.items():
        idx = pd.Index(paired.features[role]).get_indexer(f.names)
        found = idx >= 0
        if found.mean() < 0.5:
            raise BiofmError(f"{paired.source}: only {int(found.sum())} of the model's {f.n} {role} features are in "
                             f"the file (e.g. model {f.names[0]!r}, file {paired.features[role][0]!r})")
        vals = values(role, paired.counts[role])
        if isinstance(vals, np.ndarray):
            sub = np.where(found[None, :], vals[:, np.maximum(idx, 0)], 0.0)
        else:
            sel = sp.csr_matrix(vals[:, np.maximum(idx, 0)])
            sub = sp.csr_matrix(sel.multiply(found[None, :].astype(np.float32)))
            sub.eliminate_zeros()
            sub.sort_indices()
        out[role] = f.classes(sub)
    return out


def _forward(mm: MultiomeModel, seqs: list[Seq], hidden_states: bool) -> tuple[Any, dict[str, torch.Tensor]]:
    t = pack(seqs, mm.vocab.pad_id)
    out = encode(mm.model, mm.value_embedding, t["input_ids"], t["token_type_ids"], t["value_ids"], t["context"],
                 output_hidden_states=hidden_states)
    return out, t


@torch.inference_mode()
def embed_cells(mm: MultiomeModel, paired: Paired, keys: np.ndarray, *, batch_size: int = 64) -> dict[str, np.ndarray]:
    """{"mean", "cls", "mean_<role>"...}: [n, layers + 1, H] float32 (module docstring)."""
    v = mm.vocab
    rows = cell_rows(v, model_classes(v, paired), keys)
    cfg = mm.model.config
    n = len(keys)
    shape = (n, cfg.num_hidden_layers + 1, cfg.hidden_size)
    out = {k: np.zeros(shape, dtype=np.float32) for k in ("mean", "cls", *(f"mean_{r}" for r in v.roles))}
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        batch = rows[idx]
        groups = {"joint": list(v.roles), **{r: [r] for r in v.roles}}
        for name, roles in groups.items():
            seqs = []
            for i in range(len(idx)):
                s = Seq.start(v.cls_id)
                for r in roles:
                    feats, codes = context(v, batch, i, r)
                    s.add(v, r, feats, codes)
                seqs.append(s)
            res, t = _forward(mm, seqs, True)
            states = torch.stack(res.hidden_states, dim=1).float()  # [B, layers+1, L, H]
            w = t["context"].clone()
            w[:, 0] = False  # the cell's tokens, not <cls>
            wf = w[:, None, :, None].float()
            mean = ((states * wf).sum(2) / wf.sum(2).clamp_min(1.0)).numpy()
            if name == "joint":
                out["mean"][idx] = mean
                out["cls"][idx] = states[:, :, 0].numpy()
            else:
                out[f"mean_{name}"][idx] = mean
    return out


@torch.inference_mode()
def predict_cross(mm: MultiomeModel, paired: Paired, keys: np.ndarray, source: str, target: str, *,
                  batch_size: int = 32, chunk: int = 1024) -> np.ndarray:
    """Predicted target values [n_cells, n_target_features] from the source modality alone."""
    v = mm.vocab
    rows = cell_rows(v, model_classes(v, paired), keys)
    f = v.features[target]
    centres = torch.as_tensor(f.centres, dtype=torch.float32)
    n = len(keys)
    pred = np.zeros((n, f.n), dtype=np.float32)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        batch = rows[idx]
        for c0 in range(0, f.n, chunk):
            q = np.arange(c0, min(f.n, c0 + chunk))
            seqs = []
            for i in range(len(idx)):
                s = Seq.start(v.cls_id)
                feats, codes = context(v, batch, i, source)
                s.add(v, source, feats, codes)
                s.add(v, target, q, np.full(len(q), v.hidden_code), query=True, labels=np.zeros(len(q)), comp=1)
                seqs.append(s)
            res, t = _forward(mm, seqs, False)
            h = res.last_hidden_state
            hf = h.reshape(-1, h.shape[-1])[t["t_flat"]]  # [B * len(q), H], row-major: cell, then query
            out = mm.heads[target](hf).float()  # [B * len(q), n_bins] or [B * len(q), 1]
            if target == "atac":
                val = torch.sigmoid(out.squeeze(-1) + mm.priors[target][t["t_feat"]])
            else:
                val = torch.softmax(out + mm.priors[target][t["t_feat"]], -1) @ centres
            pred[np.ix_(idx, q)] = val.reshape(len(idx), len(q)).numpy()
    return pred


__all__ = ["MultiomeModel", "embed_cells", "load_multiome_model", "model_classes", "predict_cross"]
