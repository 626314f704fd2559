"""Paired cells -> token sequences for one BERT encoder over every modality.

Vocabulary (`MultiomeVocab`): specials `<pad>`=0, `<mask>`=1, `<cls>`=2, `<unk>`=3, `<eos>`=4, then one token
per feature of each role in the order rna, atac, protein (`rna:GENE`, `atac:chr1_100_600`,
`protein:CD3`). Saved as a Hugging Face WordLevel tokenizer plus `multiome_vocab.json` (features, value
classes, settings, and the cells held out of pretraining, which cross-modal evaluation scores).

A token is (feature id, token type, value code):
- token type = the modality (`TYPE`: 0 specials, 1 rna, 2 atac, 3 protein): BERT's token-type embedding is
  the modality-type embedding;
- value code: 0 none (`<cls>`, peaks), 1 + value class (RNA, protein), `HIDDEN` = n_bins + 1 for a token
  whose value is a target. Value codes go through an extra embedding table added to the word embedding
  (saved in the heads file, as the cells / atac plug-ins keep their extras).
Tokens are a set: every position id is 0, so token order carries nothing.

Queries never leak: a query token (a hidden value, or a peak asked about) attends only to the context
tokens and itself, and context tokens attend only to context (`attention` builds the [B, 1, L, L]
mask). So neither which features are queried together nor the queries' own ids reach another query,
and the context tokens' states — hence the per-modality embeddings — are those of the context alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from biofm.errors import BiofmError
from biofm.io.atomic import json_safe, write_files_into
from biofm.multiome.data import RoleFeatures

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<mask>", "<cls>", "<unk>", "<eos>")
VOCAB_FILE = "multiome_vocab.json"
FORMAT = "biofm-multiome-vocab"
TYPE = {"rna": 1, "atac": 2, "protein": 3}
N_TOKEN_TYPES = 4


class MultiomeVocab:
    """Feature <-> token id for both roles, their value classes and the tokenisation settings."""

    pad_id, mask_id, cls_id, unk_id, eos_id = range(len(SPECIAL_TOKENS))

    def __init__(self, features: dict[str, RoleFeatures], settings: dict[str, Any]):
        self.features = features
        self.roles = [r for r in ("rna", "atac", "protein") if r in features]
        self.settings = dict(settings)
        self.offsets: dict[str, int] = {}
        at = len(SPECIAL_TOKENS)
        for r in self.roles:
            self.offsets[r] = at
            at += features[r].n
        self._size = at

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def n_bins(self) -> int:
        return int(self.settings["n_bins"])

    @property
    def hidden_code(self) -> int:
        return self.n_bins + 1

    def __len__(self) -> int:
        return self._size

    def token_names(self) -> list[str]:
        return [*SPECIAL_TOKENS, *(f"{r}:{n}" for r in self.roles for n in self.features[r].names.tolist())]

    def to_hf(self) -> PreTrainedTokenizerFast:
        from tokenizers import Tokenizer, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        vocab = {tok: i for i, tok in enumerate(self.token_names())}
        backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.post_processor = processors.TemplateProcessing(
            single="<cls> $A", pair="<cls> $A <eos> $B",
            special_tokens=[("<cls>", self.cls_id), ("<eos>", self.eos_id)])
        backend.add_special_tokens(list(SPECIAL_TOKENS))
        return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                       mask_token="<mask>", cls_token="<cls>", eos_token="<eos>", bos_token="<cls>",
                                       clean_up_tokenization_spaces=False)

    def save(self, path: str | Path) -> Path:
        return write_files_into(path, self._write, prefix=".biofm-multiomevocab-")

    def _write(self, folder: Path) -> None:
        self.to_hf().save_pretrained(str(folder))
        payload = {"format": FORMAT, "version": 1, "special_tokens": list(SPECIAL_TOKENS),
                   "features": {r: f.to_json() for r, f in self.features.items()}, "settings": self.settings}
        (folder / VOCAB_FILE).write_text(json.dumps(json_safe(payload)) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> MultiomeVocab:
        file = Path(path) / VOCAB_FILE
        if not file.is_file():
            raise BiofmError(f"{path}: not a biofm multiome model or tokenizer (no {VOCAB_FILE})")
        try:
            data = json.loads(file.read_text())
            if data.get("format") != FORMAT:
                raise ValueError("not a biofm multiome vocabulary")
            return cls({r: RoleFeatures.from_json(d) for r, d in data["features"].items()}, data["settings"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BiofmError(f"{file}: unreadable multiome vocabulary ({exc})") from None


# ------------------------------------------------------------------------------------------ cells


@dataclass
class CellRows:
    """Cells as the objective collates them: per role the value classes over the model's features
    (`rna`: CSR of classes 1.. at detected genes; `atac`: binary CSR; `protein`: dense int [n, P]) and the
    token-budget subsets (`kept_rna`, `kept_atac`: binary CSR)."""

    data: dict[str, Any]
    cells: np.ndarray  # row numbers (keys of the per-cell RNG streams)

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, idx: np.ndarray) -> dict[str, Any]:
        idx = np.asarray(idx, dtype=np.int64)
        return {**{k: v[idx] for k, v in self.data.items()}, "cells": self.cells[idx]}


def cell_rows(vocab: MultiomeVocab, classes: dict[str, Any], cells: np.ndarray) -> CellRows:
    """Classes over the model's features plus the token budgets (seeded by the cell's row number)."""
    from biofm.atac.tokenize import budget

    seed = int(vocab.settings.get("seed", 0))
    data: dict[str, Any] = dict(classes)
    if "rna" in classes:
        data["kept_rna"] = budget((classes["rna"] > 0).astype(np.float32), cells, int(vocab.settings["max_rna_tokens"]),
                                  seed)
    if "atac" in classes:
        data["kept_atac"] = budget(classes["atac"], cells, int(vocab.settings["max_atac_tokens"]), seed + 1)
    return CellRows(data, np.asarray(cells, dtype=np.int64))


def row_of(m: sp.csr_matrix, i: int) -> np.ndarray:
    return m.indices[m.indptr[i]:m.indptr[i + 1]].astype(np.int64)


def context(vocab: MultiomeVocab, rows: dict[str, Any], i: int, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Cell i's context tokens of one role: (feature index within the role, value code)."""
    if role == "rna":
        feats = row_of(rows["kept_rna"], i)
        r = rows["rna"]
        cls = np.asarray(r[i, feats].toarray()).ravel().astype(np.int64) if len(feats) else np.zeros(0, np.int64)
        return feats, 1 + cls
    if role == "atac":
        feats = row_of(rows["kept_atac"], i)
        return feats, np.zeros(len(feats), dtype=np.int64)
    p = np.asarray(rows["protein"][i], dtype=np.int64)
    return np.arange(len(p)), 1 + p


@dataclass
class Seq:
    """One input sequence under construction: tokens, which are queries, and the targets among them."""

    ids: list[np.ndarray]
    types: list[np.ndarray]
    vals: list[np.ndarray]
    query: list[np.ndarray]
    # per target: position in the sequence, role type, feature index, label (class or 0/1), component
    t_pos: list[np.ndarray]
    t_role: list[np.ndarray]
    t_feat: list[np.ndarray]
    t_label: list[np.ndarray]
    t_comp: list[np.ndarray]

    @classmethod
    def start(cls, cls_id: int) -> Seq:
        one = np.array([cls_id], dtype=np.int64)
        zero = np.zeros(1, dtype=np.int64)
        return cls([one], [zero], [zero], [np.zeros(1, bool)], [], [], [], [], [])

    @property
    def length(self) -> int:
        return int(sum(len(x) for x in self.ids))

    def add(self, vocab: MultiomeVocab, role: str, feats: np.ndarray, vals: np.ndarray, *, query: bool = False,
            labels: np.ndarray | None = None, comp: int = 0) -> None:
        n = len(feats)
        at = self.length
        self.ids.append(feats.astype(np.int64) + vocab.offsets[role])
        self.types.append(np.full(n, TYPE[role], dtype=np.int64))
        self.vals.append(np.asarray(vals, dtype=np.int64))
        self.query.append(np.full(n, query))
        if labels is not None:
            self.t_pos.append(at + np.arange(n))
            self.t_role.append(np.full(n, TYPE[role], dtype=np.int64))
            self.t_feat.append(feats.astype(np.int64))
            self.t_label.append(np.asarray(labels, dtype=np.int64))
            self.t_comp.append(np.full(n, comp, dtype=np.int64))


def pack(seqs: list[Seq], pad_id: int) -> dict[str, torch.Tensor]:
    """Sequences padded to the longest: input_ids, token_type_ids, value_ids, context [B, L] (real,
    non-query tokens, `<cls>` included) and the targets flattened (t_flat = b * L + position)."""
    width = max(s.length for s in seqs)
    b = len(seqs)
    ids = np.full((b, width), pad_id, dtype=np.int64)
    types = np.zeros((b, width), dtype=np.int64)
    vals = np.zeros((b, width), dtype=np.int64)
    ctx = np.zeros((b, width), dtype=bool)
    t: dict[str, list[np.ndarray]] = {"t_flat": [], "t_role": [], "t_feat": [], "t_label": [], "t_comp": []}
    for r, s in enumerate(seqs):
        n = s.length
        ids[r, :n] = np.concatenate(s.ids)
        types[r, :n] = np.concatenate(s.types)
        vals[r, :n] = np.concatenate(s.vals)
        ctx[r, :n] = ~np.concatenate(s.query)
        if s.t_pos:
            t["t_flat"].append(r * width + np.concatenate(s.t_pos))
            for k in ("t_role", "t_feat", "t_label", "t_comp"):
                t[k].append(np.concatenate(getattr(s, k)))
    out = {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(types),
           "value_ids": torch.from_numpy(vals), "context": torch.from_numpy(ctx),
           "real": torch.from_numpy(ids != pad_id)}
    for k, v in t.items():
        out[k] = torch.from_numpy(np.concatenate(v) if v else np.zeros(0, dtype=np.int64))
    return out


def attention(context_mask: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] boolean: key j is visible to query i when j is a context token or j == i."""
    L = context_mask.shape[1]
    eye = torch.eye(L, dtype=torch.bool, device=context_mask.device)
    return (context_mask[:, None, None, :] | eye[None, None]).contiguous()


__all__ = ["N_TOKEN_TYPES", "SPECIAL_TOKENS", "TYPE", "CellRows", "MultiomeVocab", "Seq", "attention", "cell_rows",
           "context", "pack"]
