"""scATAC pretraining objectives on a stock BERT, for the two designs.

Peak tokens (`PeakTokenObjective`, design `peak_tokens`): the backbone is `BertForMaskedLM` whose word
embeddings are peaks; the token type carries the peak's state (1 accessible, 2 hidden query) and the
position ids its genomic window (see `AtacTokenizerConfig`). Components:
- `masked_peak`: for every query peak (hidden accessible ones and sampled inaccessible ones, see
  `biofm.atac.tokenize`) the probability that it is accessible in this cell; Bernoulli NLL. A query's
  logit is head(h) + a learned per-peak offset that starts at the context-free answer (`peak_prior`,
  the cells' gene_prior idea): step 0 scores the per-peak baseline and the encoder learns what the rest
  of the cell adds;
- `contrastive`: InfoNCE between two random peak-dropout views of each cell (below).

Patch CNN (`PatchObjective`, design `patch_cnn`, the seed project's): the cell's binarised vector over
every peak in genome order goes through Conv1d layers with kernel = stride (`PatchEmbedder`), one vector
per patch of prod(strides) peaks, into a stock `BertModel` through `inputs_embeds` after a `<cls>`.
- `masked_patch`: hidden patches' vectors are replaced by a learned mask vector; each hidden patch's
  peaks are predicted (Bernoulli NLL per peak), with the same per-peak offset;
- `contrastive`: InfoNCE between two random peak-dropout views.

Contrastive (both designs): NT-Xent over the 2B views of a micro-batch of B cells; each view's positive
is the other view of its cell, its negatives the other 2B - 2 views. Each view's loss is a cross-entropy
over 2B - 1 candidates, so a model that cannot tell cells apart scores exactly log(2B - 1) (`chance`),
and its view-retrieval accuracy (is the nearest other view the partner?) is 1 / (2B - 1).

Honest health. The masked components are scored per target beside context-free baselines on exactly the
same targets: `per_peak` (the peak's own rate in the training cells, the verdict's reference) and
`global` (one rate for all peaks). For masked peaks the rates are turned into the probability that a
QUERY is accessible under the sampling design (tokenize module docstring), which is what a model
without context can know; for masked patches every peak of a hidden patch is a target, so the rate
itself is the answer. With contrastive as the only objective the reference is `chance`, log(2B - 1) per
view, so `biofm doctor` calls a run whose loss sits there "not below the context-free baseline".

At each honest evaluation the objectives that are not the main one come back as `component/NAME` beside
their baselines, and view-retrieval accuracy as `metric/retrieval_accuracy` against chance 1/(2B-1): the
trainer records them in metrics.jsonl and summary.json, and `biofm doctor` prints each.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from biofm.atac.tokenize import ACCESSIBLE, QUERY, dropout_view, merge_sorted, pack_rows, sample_queries
from biofm.errors import BiofmError
from biofm.io.atomic import write_json
from biofm.models.sparse_top import hidden_at_targets, target_index
from biofm.train.objectives import Batch, Objective, load_strictly

COMPONENTS = ("masked_peak", "masked_patch", "contrastive")
REFERENCE = {"masked_peak": "per_peak", "masked_patch": "per_peak", "contrastive": "chance"}
UNITS = {"masked_peak": "nats per query peak", "masked_patch": "nats per hidden peak",
         "contrastive": "nats per view"}
# what `biofm doctor` suggests when the main loss does not beat its reference
ADVICE = {
    "contrastive": (
        "a contrastive loss at exactly log(2B - 1) with grad_norm near 0 in metrics.jsonl is a collapsed "
        "encoder (every view the same vector): use a warmup (train.warmup_steps), gradient clipping "
        "(train.grad_clip=1.0) and a lower train.lr",
        "add a masked objective (masked_peak, or masked_patch for patch_cnn): per-peak targets cannot collapse",
        "the doctor's retrieval-accuracy line compares view retrieval with chance 1/(2B - 1)",
    ),
    "masked_peak": ("keep objectives.peak_prior=true: each query then starts at its peak's own rate",),
    "masked_patch": ("keep objectives.peak_prior=true: each peak then starts at its own rate",),
}
HEADS_FILE = "biofm_atac_heads.safetensors"
ATAC_FILE = "biofm_atac.json"
_STREAM_MASK, _STREAM_VIEWS = 1, 2
# one more forward pass of a length group costs about this many padded tokens (see `length_groups`)
GROUP_OVERHEAD_TOKENS = 1024


def main_component(weights: dict[str, float]) -> str:
    """The masked component when there is one (its baseline is the stronger test), else contrastive."""
    for name in ("masked_peak", "masked_patch", "contrastive"):
        if weights.get(name, 0) > 0:
            return name
    raise ValueError("give an objective a weight > 0")


def info_nce(z: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent. z: [2B, D] L2-normalised, rows b and B + b the two views of cell b.

    Returns each view's loss [2B] (cross-entropy over the 2B - 1 other views, partner = target) and
    whether the partner is its most similar other view [2B]."""
    n = z.shape[0]
    sim = (z @ z.T) / temperature  # [2B, 2B]
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = (torch.arange(n, device=z.device) + n // 2) % n
    return F.cross_entropy(sim, partner, reduction="none"), sim.argmax(1) == partner


def query_logit(kept_rate: np.ndarray, acc_rate: np.ndarray, r_pos: float, r_neg: float) -> np.ndarray:
    """Context-free logit that a QUERY peak is accessible: log(p r_pos) - log((1 - q) r_neg)."""
    p = np.asarray(kept_rate, dtype=np.float64)
    q = np.asarray(acc_rate, dtype=np.float64)
    return np.log(p * r_pos) - np.log(np.maximum(1.0 - q, 1e-12) * r_neg)


def rate_logit(p: np.ndarray | float) -> np.ndarray:
    """logit(p), clipped away from 0 and 1: the context-free answer for a target that is a peak itself."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _zero_last(head: nn.Sequential) -> nn.Sequential:
    """Start a head at zero output, so the per-peak offset alone is the first prediction."""
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


class _Positioned:
    """A BertModel as `hidden_at_targets` sees it, with the batch's genomic position ids added to every
    call of its embeddings (the stock forward otherwise numbers positions 0..L-1)."""

    def __init__(self, bert: nn.Module, position_ids: torch.Tensor):
        self.bert, self.position_ids = bert, position_ids
        self.config, self.encoder = bert.config, bert.encoder

    def embeddings(self, **kw: Any) -> torch.Tensor:
        return self.bert.embeddings(position_ids=self.position_ids, **kw)

    def __call__(self, **kw: Any) -> Any:
        return self.bert(position_ids=self.position_ids, **kw)


class PatchEmbedder(nn.Module):
    """Conv1d stack with kernel = stride: [B, n_peaks_padded] binary -> [B, n_patches, hidden]."""

    def __init__(self, strides: list[int], channels: int, hidden: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, s in enumerate(strides):
            last = i == len(strides) - 1
            c_out = hidden if last else channels
            layers.append(nn.Conv1d(c_in, c_out, kernel_size=s, stride=s))
            if not last:
                layers.append(nn.GELU())
            c_in = c_out
        self.conv = nn.Sequential(*layers)
        self.patch_size = int(np.prod(strides))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(1)).transpose(1, 2)  # [B, 1, N] -> [B, H, P] -> [B, P, H]


class AtacObjective(Objective):
    """What both designs share: components and reference, the contrastive head and loss, the eval record of
    view retrieval, and saving the extra modules beside the stock model."""

    design: str

    def __init__(self, model: PreTrainedModel, *, weights: dict[str, float], stats: dict[str, np.ndarray | float],
                 temperature: float, projection_dim: int, view_dropout: float, pooling: str, peak_prior: bool):
        super().__init__()
        self.model = model
        self.components = {k: float(v) for k, v in weights.items() if v > 0}
        self.main = main_component(self.components)
        self.reference = REFERENCE[self.main]
        self.loss_unit = UNITS[self.main]
        self.advice = ADVICE[self.main]
        self.temperature, self.view_dropout, self.pooling = temperature, view_dropout, pooling
        self.peak_prior = peak_prior
        self.cls_id = int(model.config.bos_token_id)
        self.pad_id = int(model.config.pad_token_id)
        hidden = model.config.hidden_size
        if "contrastive" in self.components:
            self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, projection_dim))
        for key, value in stats.items():
            self.register_buffer(f"stat_{key}", torch.as_tensor(np.asarray(value), dtype=torch.float32),
                                 persistent=False)
        # BERT's own vocabulary head is unused: keep DDP from waiting on its gradients
        tied = model.get_input_embeddings().weight
        for p in model.cls.parameters():
            if p is not tied:
                p.requires_grad_(False)

    # ---- contrastive -----------------------------------------------------------------------------
    def _contrastive(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = F.normalize(self.projection(pooled).float(), dim=-1)  # [2B, P]
        return info_nce(z, self.temperature)

    @staticmethod
    def _chance(loss: torch.Tensor) -> torch.Tensor:
        n = loss.shape[0]
        return torch.full_like(loss, math.log(max(n - 1, 1)))

    def _views(self, peaks: list[np.ndarray], keys: np.ndarray, seed: int) -> list[np.ndarray]:
        """Two peak-dropout views per cell: all views A, then all views B ([2B] peak arrays)."""
        a, b = [], []
        for cell, key in zip(peaks, keys, strict=True):
            rng = np.random.default_rng([seed, int(key), _STREAM_VIEWS])
            a.append(dropout_view(cell, self.view_dropout, rng))
            b.append(dropout_view(cell, self.view_dropout, rng))
        return a + b

    # ---- saving ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"design": self.design, "objectives": self.components, "main": self.main,
                "reference": self.reference, "temperature": self.temperature, "pooling": self.pooling,
                "view_dropout": self.view_dropout, "peak_prior": self.peak_prior, "heads_file": HEADS_FILE}

    def _extra_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in state.items() if not k.startswith("model.")}

    def save_pretrained(self, path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        path = Path(path)
        state = state_dict if state_dict is not None else self.state_dict()
        super().save_pretrained(path, state)
        save_file(self._extra_keys(state), str(path / HEADS_FILE))
        write_json(path / ATAC_FILE, self.describe())

    def load_weights(self, path: Path) -> None:
        super().load_weights(path)
        file = Path(path) / HEADS_FILE
        if not file.is_file():
            raise BiofmError(f"{file}: missing (the heads of a biofm ATAC model)")
        heads = load_file(str(file))
        want = set(self._extra_keys(self.state_dict()))
        if set(heads) != want:
            odd = sorted(set(heads) ^ want)
            raise BiofmError(f"{file}: heads do not match the objective ({', '.join(odd[:3])}"
                             f"{' ...' if len(odd) > 3 else ''})")
        self.load_state_dict(heads, strict=False)  # the encoder came from model.safetensors above


def length_groups(lengths: np.ndarray, overhead: int = GROUP_OVERHEAD_TOKENS) -> list[np.ndarray]:
    """The rows of a batch in groups of similar length, each to be padded only to its own longest row.

    Cells hold from tens to hundreds of peaks, so one long cell would make a whole batch padded to its
    length cost several times what its cells hold. The rows are sorted by length and cut into runs so as
    to minimise the padded tokens plus `overhead` tokens per group (what one more forward pass costs):
    an exact dynamic programme over the cut points, O(B^2) for B rows. Returns row indices per group."""
    order = np.argsort(lengths, kind="stable")
    sorted_len = np.asarray(lengths, dtype=np.float64)[order]
    n = len(order)
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):  # the best partition of the j shortest rows; its last group is rows i..j-1
        i = np.arange(j)
        cost = best[:j] + (j - i) * sorted_len[j - 1] + overhead
        cut[j] = int(np.argmin(cost))
        best[j] = cost[cut[j]]
    groups: list[np.ndarray] = []
    j = n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = int(cut[j])
    return groups[::-1]


class PeakTokenObjective(AtacObjective):
    """Design `peak_tokens`: masked-peak accessibility (+ optional contrastive) on peak-id tokens.

    A batch is split into length groups (`length_groups`), each padded only to its own longest cell and
    run through the encoder on its own: tensors are keyed `m{g}_...` (masked input of group g) and
    `v{g}_...` (contrastive views), so a batch costs about what its cells hold."""

    design = "peak_tokens"
    sparse_top: bool = True
    group_overhead: int = GROUP_OVERHEAD_TOKENS

    def __init__(self, model: PreTrainedModel, *, positions: np.ndarray, n_peaks: int, offset: int,
                 r_pos: float, r_neg: float, **kw: Any):
        super().__init__(model, **kw)
        self.n_peaks, self.offset, self.r_pos, self.r_neg = n_peaks, offset, float(r_pos), float(r_neg)
        self.positions = np.asarray(positions, dtype=np.int64)
        hidden = model.config.hidden_size
        if "masked_peak" in self.components:
            self.head = _zero_last(nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden),
                                                 nn.Linear(hidden, 1)))
            prior = self.stat_per_peak_logit if self.peak_prior else torch.full_like(
                self.stat_per_peak_logit, float(self.stat_global_logit))
            self.peak_logit = nn.Parameter(prior.clone())  # [n_peaks] learned offset

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_peaks": self.n_peaks, "r_pos": self.r_pos, "r_neg": self.r_neg}

    def _pack(self, seqs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], prefix: str,
              tensors: dict[str, torch.Tensor]) -> int:
        """Pack rows group by group into `tensors` (keys `{prefix}{g}_...`); returns the real tokens."""
        tokens = 0
        for g, rows in enumerate(length_groups(np.array([len(p) for p, _, _ in seqs]), self.group_overhead)):
            packed = pack_rows([seqs[i] for i in rows], self.positions, self.pad_id, self.cls_id, self.offset)
            key = f"{prefix}{g}_"
            for name in ("input_ids", "token_type_ids", "position_ids", "attention_mask"):
                tensors[key + name] = torch.from_numpy(packed[name])
            tensors[key + "rows"] = torch.from_numpy(rows.astype(np.int64))  # each row's place in the batch
            selected = packed["labels"] >= 0
            if selected.any():
                index = target_index(selected)
                tensors.update({key + "target_flat": index["flat"], key + "target_query": index["query"],
                                key + "target_slot": index["slot"],
                                key + "target_peaks": torch.from_numpy(packed["input_ids"][selected] - self.offset),
                                key + "target_labels": torch.from_numpy(packed["labels"][selected]
                                                                        .astype(np.float32))})
            tokens += int(packed["attention_mask"].sum())
        return tokens

    def collate(self, rows: dict[str, Any], keys: np.ndarray, *, honest: bool, seed: int) -> Batch:
        """rows: {"kept": CSR of kept peaks, "full": CSR of all accessible peaks, "cells": rows}. Queries and
        views are drawn per cell from its own key, so they do not depend on the batch."""
        kept, full = rows["kept"], rows["full"]
        cells = [kept.indices[kept.indptr[i]:kept.indptr[i + 1]].astype(np.int64) for i in range(kept.shape[0])]
        tensors: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        tokens = 0
        if "masked_peak" in self.components:
            seqs = []
            for i, key in enumerate(keys):
                rng = np.random.default_rng([seed, int(key), _STREAM_MASK])
                acc = full.indices[full.indptr[i]:full.indptr[i + 1]].astype(np.int64)
                q = sample_queries(cells[i], acc, self.n_peaks, self.r_pos, self.r_neg, rng)
                seqs.append(merge_sorted([(q.observed, ACCESSIBLE, -1), (q.positives, QUERY, 1),
                                          (q.negatives, QUERY, 0)]))
            tokens += self._pack(seqs, "m", tensors)
            counts["masked_peak"] = int(sum(len(v) for k, v in tensors.items() if k.endswith("target_labels")))
        if "contrastive" in self.components:
            views = self._views(cells, keys, seed)
            tokens += self._pack([(v, np.full(len(v), ACCESSIBLE), np.full(len(v), -1)) for v in views], "v",
                                 tensors)
            counts["contrastive"] = len(views)
        return Batch(tensors, counts, tokens)

    def constant_baselines(self) -> dict[str, float]:
        return {"uniform": math.log(2)} if self.main == "masked_peak" else {}

    @staticmethod
    def groups(tensors: dict[str, torch.Tensor], prefix: str) -> list[dict[str, torch.Tensor]]:
        """The length groups of one kind (`m`: masked input, `v`: views), each as {name: tensor}."""
        out = []
        while f"{prefix}{len(out)}_input_ids" in tensors:
            key = f"{prefix}{len(out)}_"
            out.append({k[len(key):]: v for k, v in tensors.items() if k.startswith(key)})
        return out

    def _pooled(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        w = mask.clone()
        w[:, 0] = False  # the cell's peaks, not <cls>
        w = w.unsqueeze(-1).to(hidden.dtype)
        return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)

    def forward(self, per_token: bool = False, **tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        """tensors, per length group g (see `collate`):
        m{g}_input_ids, _token_type_ids, _position_ids, _attention_mask [b, L]: `<cls>` + the cell's peaks in
          genome order (token type 1 observed, 2 query; position = genomic window); _rows [b];
        m{g}_target_flat [n] (b * L + position of each query), _target_query [b, Q], _target_slot [n],
          _target_peaks [n] (peak index), _target_labels [n] (1.0 accessible, 0.0 not), when g has queries;
        v{g}_... the same inputs for the contrastive views (rows index the 2B views: all A, then all B)."""
        losses: dict[str, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        peaks_all, labels_all = [], []
        if "masked_peak" in self.components:
            nll = []
            for t in self.groups(tensors, "m"):
                if "target_flat" not in t:
                    continue
                index = {"flat": t["target_flat"], "query": t["target_query"], "slot": t["target_slot"]}
                h = hidden_at_targets(self.model, _Positioned(self.model.bert, t["position_ids"]), t["input_ids"],
                                      t["attention_mask"], index, self.sparse_top,
                                      token_type_ids=t["token_type_ids"])  # [n, H]
                logits = self.head(h).float().squeeze(-1) + self.peak_logit[t["target_peaks"]]  # [n]
                nll.append(F.binary_cross_entropy_with_logits(logits, t["target_labels"], reduction="none"))
                peaks_all.append(t["target_peaks"])
                labels_all.append(t["target_labels"])
            losses["masked_peak"] = torch.cat(nll) if nll else self.peak_logit[:0]
        if "contrastive" in self.components:
            pooled, order = [], []
            for t in self.groups(tensors, "v"):
                hv = self.model.bert(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"],
                                     position_ids=t["position_ids"],
                                     attention_mask=t["attention_mask"]).last_hidden_state  # [b, Lv, H]
                pooled.append(self._pooled(hv, t["attention_mask"]))
                order.append(t["rows"])
            stacked = torch.cat(pooled)
            views = torch.empty_like(stacked)
            views[torch.cat(order)] = stacked  # back to the batch's view order: [2B, H]
            losses["contrastive"], hits = self._contrastive(views)
            out["metric/retrieval_accuracy"] = hits.float()
            out["metric_chance/retrieval_accuracy"] = torch.full_like(hits, 1.0 / max(len(hits) - 1, 1),
                                                                      dtype=torch.float32)
        if not per_token:
            return {k: v.sum() for k, v in losses.items()}
        for name, loss in losses.items():  # the other objectives, each against its own baseline
            if name != self.main and name == "contrastive":
                out["component/contrastive"], out["component_baseline/contrastive"] = loss, self._chance(loss)
        out["loss"] = losses[self.main]
        if self.main == "contrastive":
            out["baseline/chance"] = self._chance(out["loss"])
        else:
            empty = self.stat_per_peak_logit.new_zeros(0)
            peaks = torch.cat(peaks_all) if peaks_all else empty.long()
            y = torch.cat(labels_all) if labels_all else empty
            out["baseline/per_peak"] = F.binary_cross_entropy_with_logits(self.stat_per_peak_logit[peaks], y,
                                                                          reduction="none")
            out["baseline/global"] = F.binary_cross_entropy_with_logits(self.stat_global_logit.expand_as(y), y,
                                                                        reduction="none")
        return out


class PatchObjective(AtacObjective):
    """Design `patch_cnn` (the seed's): CNN patches of the whole peak vector, BERT over the patches,
    masked-patch reconstruction and / or two-view contrastive."""

    design = "patch_cnn"

    def __init__(self, model: PreTrainedModel, *, n_peaks: int, strides: list[int], channels: int,
                 mask_prob: float, **kw: Any):
        super().__init__(model, **kw)
        hidden = model.config.hidden_size
        self.n_peaks, self.strides, self.channels, self.mask_prob = n_peaks, list(strides), channels, mask_prob
        self.patcher = PatchEmbedder(self.strides, channels, hidden)
        self.patch_size = self.patcher.patch_size
        self.n_patches = math.ceil(n_peaks / self.patch_size)
        if "masked_patch" in self.components:
            self.mask_embedding = nn.Parameter(torch.randn(hidden) * 0.02)
            self.head = _zero_last(nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden),
                                                 nn.Linear(hidden, self.patch_size)))
            prior = self.stat_per_peak_logit if self.peak_prior else torch.full_like(
                self.stat_per_peak_logit, float(self.stat_global_logit))
            self.peak_logit = nn.Parameter(prior.clone())  # [n_peaks]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_peaks": self.n_peaks, "conv_strides": self.strides,
                "conv_channels": self.channels, "patch_size": self.patch_size, "n_patches": self.n_patches,
                "mask_prob": self.mask_prob}

    def dense(self, peaks: list[np.ndarray]) -> np.ndarray:
        """Binary [len(peaks), n_patches * patch_size] float32 vectors (the padding peaks are 0)."""
        x = np.zeros((len(peaks), self.n_patches * self.patch_size), dtype=np.float32)
        for r, p in enumerate(peaks):
            x[r, p] = 1.0
        return x

    def collate(self, rows: dict[str, Any], keys: np.ndarray, *, honest: bool, seed: int) -> Batch:
        full = rows["full"]
        cells = [full.indices[full.indptr[i]:full.indptr[i + 1]].astype(np.int64) for i in range(full.shape[0])]
        b, n_p, size = len(cells), self.n_patches, self.patch_size
        tensors: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        tokens = 0
        if "masked_patch" in self.components:
            x = self.dense(cells)
            hide = np.stack([np.random.default_rng([seed, int(k), _STREAM_MASK]).random(n_p) < self.mask_prob
                             for k in keys])  # [B, n_p]
            rows_, cols_ = np.nonzero(hide)  # row-major: the order of h[hide]
            peaks = cols_[:, None] * size + np.arange(size)  # [n_hidden, size]
            valid = peaks < self.n_peaks
            tensors.update(x=torch.from_numpy(x), patch_mask=torch.from_numpy(hide),
                           target_labels=torch.from_numpy(x.reshape(b, n_p, size)[rows_, cols_]),
                           target_peaks=torch.from_numpy(np.minimum(peaks, self.n_peaks - 1)),
                           target_valid=torch.from_numpy(valid))
            counts["masked_patch"] = int(valid.sum())
            tokens += b * (n_p + 1)
        if "contrastive" in self.components:
            views = self._views(cells, keys, seed)
            tensors["views"] = torch.from_numpy(self.dense(views))
            counts["contrastive"] = len(views)
            tokens += len(views) * (n_p + 1)
        return Batch(tensors, counts, tokens)

    def constant_baselines(self) -> dict[str, float]:
        return {"uniform": math.log(2)} if self.main == "masked_patch" else {}

    def encode(self, x: torch.Tensor, patch_mask: torch.Tensor | None = None,
               output_hidden_states: bool = False) -> Any:
        """BERT over `<cls>` + the patches of binary vectors x [B, N]; hidden patches get the mask vector."""
        patches = self.patcher(x)  # [B, n_p, H]
        if patch_mask is not None:
            patches = torch.where(patch_mask.unsqueeze(-1), self.mask_embedding.to(patches.dtype), patches)
        return encode_patches(self.model, patches, output_hidden_states=output_hidden_states)

    def forward(
        self,
        x: torch.Tensor | None = None,  # [B, N] binarised peaks (masked-patch input before masking)
        patch_mask: torch.Tensor | None = None,  # [B, n_p] hidden patches
        target_labels: torch.Tensor | None = None,  # [n_hidden, size] their peaks
        target_peaks: torch.Tensor | None = None,  # [n_hidden, size] peak index (clamped)
        target_valid: torch.Tensor | None = None,  # [n_hidden, size] False past the last peak
        views: torch.Tensor | None = None,  # [2B, N] two dropout views per cell
        per_token: bool = False,
    ) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        if "masked_patch" in self.components:
            h = self.encode(x, patch_mask).last_hidden_state[:, 1:]  # [B, n_p, H]
            logits = self.head(h[patch_mask]).float() + self.peak_logit[target_peaks]  # [n_hidden, size]
            nll = F.binary_cross_entropy_with_logits(logits, target_labels, reduction="none")
            losses["masked_patch"] = nll[target_valid]
        if "contrastive" in self.components:
            hv = self.encode(views).last_hidden_state  # [2B, 1 + n_p, H]
            pooled = hv[:, 0] if self.pooling == "cls" else hv[:, 1:].mean(1)
            losses["contrastive"], hits = self._contrastive(pooled)
            out["metric/retrieval_accuracy"] = hits.float()
            out["metric_chance/retrieval_accuracy"] = torch.full_like(hits, 1.0 / max(len(hits) - 1, 1),
                                                                      dtype=torch.float32)
        if not per_token:
            return {k: v.sum() for k, v in losses.items()}
        for name, loss in losses.items():  # the other objectives, each against its own baseline
            if name != self.main and name == "contrastive":
                out["component/contrastive"], out["component_baseline/contrastive"] = loss, self._chance(loss)
        out["loss"] = losses[self.main]
        if self.main == "contrastive":
            out["baseline/chance"] = self._chance(out["loss"])
        else:
            peaks, y = target_peaks[target_valid], target_labels[target_valid]
            out["baseline/per_peak"] = F.binary_cross_entropy_with_logits(self.stat_per_peak_logit[peaks], y,
                                                                          reduction="none")
            out["baseline/global"] = F.binary_cross_entropy_with_logits(self.stat_global_logit.expand_as(y), y,
                                                                        reduction="none")
        return out


def encode_patches(model: PreTrainedModel, patches: torch.Tensor, output_hidden_states: bool = False) -> Any:
    """The stock BertModel over `<cls>` (its word embedding) + patch vectors [B, n_p, H], via inputs_embeds."""
    bert = model.bert
    cls = bert.embeddings.word_embeddings.weight[int(model.config.bos_token_id)]  # [H]
    inputs = torch.cat([cls.to(patches.dtype).expand(patches.shape[0], 1, -1), patches], 1)  # [B, 1 + n_p, H]
    return bert(inputs_embeds=inputs, output_hidden_states=output_hidden_states)


def load_patcher(path: Path, info: dict[str, Any], hidden: int) -> PatchEmbedder:
    """The patch CNN of a saved `patch_cnn` model, loaded strictly from its heads file."""
    file = Path(path) / HEADS_FILE
    if not file.is_file():
        raise BiofmError(f"{file}: missing (the patch CNN of a biofm ATAC model)")
    weights = {k[len("patcher."):]: v for k, v in load_file(str(file)).items() if k.startswith("patcher.")}
    patcher = PatchEmbedder(list(info["conv_strides"]), int(info["conv_channels"]), hidden)
    load_strictly(patcher, weights, file)
    return patcher.eval()
