"""Multiome pretraining objectives on one stock BERT over the tokens of both modalities.

Components (weights in `MultiomeObjectivesConfig`; every target hidden from the input):
- `masked`: within each modality, values hidden in the full two-modality input: an RNA token's value class
  (the token is there, so the class is one of the detected ones), a protein's value class, and peak
  accessibility queries (hidden accessible peaks plus sampled inaccessible ones, `biofm.atac.tokenize`'s
  sampling design);
- `cross`: one whole modality hidden: the input is the OTHER modality alone, and uniformly drawn features
  of the hidden one are queried (RNA value class incl. "not detected", protein value class, peak
  accessible or not). Each cell does it both ways (RNA -> other, other -> RNA);
- `contrastive`: CLIP-style InfoNCE between the two per-modality cell embeddings (mean of the context
  tokens of each modality's own input; with no queries attending back these are each modality alone):
  for B cells, each cell's modality-A embedding against the B modality-B embeddings and back, 2B
  cross-entropies over B candidates; retrieval accuracy = the partner is the nearest.

Honest health. Each component is scored per target beside its context-free baseline on the same targets:
the feature's own marginal over the training cells (`per_feature`: an RNA gene's class distribution,
renormalised over the detected classes for a masked RNA token; a protein's; a peak's accessibility rate,
turned into the probability that a QUERY is accessible under the masked sampling design), and for
contrastive chance, log(B) per direction and accuracy 1/B. Every head starts AT its baseline: a learned
per-feature offset initialised to the marginal plus a head whose last layer starts at zero, so step 0
scores the baseline and the encoder learns what context adds. The trainer's verdict is about the main
component (`cross` when on, else `masked`, else `contrastive`); every component and modality is returned
as `component/NAME_ROLE` with its baseline, and retrieval as `metric/retrieval_accuracy` with its chance,
which the trainer records at each honest evaluation and `biofm doctor` reports line by line.
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

from biofm.atac.tokenize import sample_queries
from biofm.errors import BiofmError
from biofm.io.atomic import write_json
from biofm.multiome.tokenize import TYPE, MultiomeVocab, Seq, attention, context, pack, row_of
from biofm.train.objectives import Batch, Objective

COMPONENTS = ("masked", "cross", "contrastive")
COMP_CODE = {"masked": 0, "cross": 1}
REFERENCE = {"masked": "per_feature", "cross": "per_feature", "contrastive": "chance"}
UNITS = {"masked": "nats per hidden value", "cross": "nats per queried feature", "contrastive": "nats per retrieval"}
ADVICE = (
    "the objective lines above say which objective and modality does not beat its own baseline",
    "the heads start at each feature's marginal: a loss at the baseline means the encoder adds nothing yet; "
    "train longer (train.steps) or raise train.lr",
)
HEADS_FILE = "biofm_multiome_heads.safetensors"
INFO_FILE = "biofm_multiome.json"
_MASK, _CROSS = 1, 2
ROLE_OF = {v: k for k, v in TYPE.items()}


def main_component(weights: dict[str, float]) -> str:
    for name in ("cross", "masked", "contrastive"):
        if weights.get(name, 0) > 0:
            return name
    raise ValueError("give an objective a weight > 0")


def _zero_last(head: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


def _head(hidden: int, out: int) -> nn.Sequential:
    return _zero_last(nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, out)))


def encode(model: PreTrainedModel, value_embedding: nn.Embedding, input_ids: torch.Tensor,
           token_type_ids: torch.Tensor, value_ids: torch.Tensor, context: torch.Tensor,
           output_hidden_states: bool = False) -> Any:
    """The stock BertModel over feature + value embeddings, modality token types, position 0 everywhere
    (tokens are a set) and the query-isolating mask (`biofm.multiome.tokenize.attention`)."""
    bert = model.bert
    emb = bert.embeddings.word_embeddings(input_ids) + value_embedding(value_ids)  # [B, L, H]
    return bert(inputs_embeds=emb, token_type_ids=token_type_ids, position_ids=torch.zeros_like(input_ids),
                attention_mask=attention(context), output_hidden_states=output_hidden_states)


def context_mean(h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """Mean over the context tokens after `<cls>`: h [B, L, H] -> [B, H]."""
    w = ctx.clone()
    w[:, 0] = False
    w = w.unsqueeze(-1).to(h.dtype)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


class MultiomeObjective(Objective):
    """Masked values, whole-modality hiding and CLIP alignment for two modalities (module docstring)."""

    def __init__(self, model: PreTrainedModel, vocab: MultiomeVocab, *, weights: dict[str, float],
                 stats: dict[str, np.ndarray], mask_prob: float, r_neg: float, temperature: float,
                 projection_dim: int):
        super().__init__()
        self.model, self.vocab = model, vocab
        self.roles = list(vocab.roles)
        self.components = {k: float(v) for k, v in weights.items() if v > 0}
        self.main = main_component(self.components)
        self.reference = REFERENCE[self.main]
        self.loss_unit = UNITS[self.main]
        self.advice = ADVICE
        self.mask_prob, self.r_neg, self.temperature = float(mask_prob), float(r_neg), float(temperature)
        self.cross_queries = int(vocab.settings["cross_queries"])
        self.pad_id, self.cls_id = vocab.pad_id, vocab.cls_id
        hidden = model.config.hidden_size
        nb = vocab.n_bins
        self.value_embedding = nn.Embedding(nb + 2, hidden)
        nn.init.normal_(self.value_embedding.weight, std=0.02)
        for key, value in stats.items():
            self.register_buffer(f"stat_{key}", torch.as_tensor(np.asarray(value), dtype=torch.float32),
                                 persistent=False)
        self.heads = nn.ModuleDict({r: _head(hidden, 1 if r == "atac" else nb) for r in self.roles})
        # learned per-feature offsets starting at the context-free answer
        self.priors = nn.ParameterDict({r: nn.Parameter(getattr(self, f"stat_{r}_prior").clone()) for r in self.roles})
        if "contrastive" in self.components:
            self.projections = nn.ModuleDict({r: nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(),
                                                               nn.Linear(hidden, projection_dim)) for r in self.roles})
        tied = model.get_input_embeddings().weight
        for p in model.cls.parameters():  # BERT's own vocabulary head is unused
            if p is not tied:
                p.requires_grad_(False)

    # ---- batches ----------------------------------------------------------------------------------
    def _masked_seq(self, rows: dict[str, Any], i: int, rng: np.random.Generator) -> Seq:
        v = self.vocab
        s = Seq.start(self.cls_id)
        for role in self.roles:
            if role == "atac":
                kept, acc = row_of(rows["kept_atac"], i), row_of(rows["atac"], i)
                q = sample_queries(kept, acc, v.features["atac"].n, self.mask_prob, self.r_neg, rng)
                s.add(v, "atac", q.observed, np.zeros(len(q.observed)))
                s.add(v, "atac", q.positives, np.full(len(q.positives), v.hidden_code), query=True,
                      labels=np.ones(len(q.positives)), comp=COMP_CODE["masked"])
                s.add(v, "atac", q.negatives, np.full(len(q.negatives), v.hidden_code), query=True,
                      labels=np.zeros(len(q.negatives)), comp=COMP_CODE["masked"])
                continue
            feats, codes = context(v, rows, i, role)
            hide = rng.random(len(feats)) < self.mask_prob
            s.add(v, role, feats[~hide], codes[~hide])
            s.add(v, role, feats[hide], np.full(int(hide.sum()), v.hidden_code), query=True, labels=codes[hide] - 1,
                  comp=COMP_CODE["masked"])
        return s

    def _cross_seq(self, rows: dict[str, Any], i: int, source: str, rng: np.random.Generator) -> Seq:
        v = self.vocab
        s = Seq.start(self.cls_id)
        feats, codes = context(v, rows, i, source)
        s.add(v, source, feats, codes)
        if "cross" not in self.components:
            return s
        target = next(r for r in self.roles if r != source)
        n = v.features[target].n
        if target == "protein":
            q = np.arange(n)
            labels = np.asarray(rows["protein"][i], dtype=np.int64)
        else:
            q = np.sort(rng.choice(n, size=min(self.cross_queries, n), replace=False))
            labels = np.asarray(rows[target][i, q].toarray()).ravel().astype(np.int64)
            if target == "atac":
                labels = (labels > 0).astype(np.int64)
        s.add(v, target, q, np.full(len(q), v.hidden_code), query=True, labels=labels, comp=COMP_CODE["cross"])
        return s

    def collate(self, rows: dict[str, Any], keys: np.ndarray, *, honest: bool, seed: int) -> Batch:
        tensors: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        tokens = 0
        if "masked" in self.components:
            seqs = [self._masked_seq(rows, i, np.random.default_rng([seed, int(k), _MASK])) for i, k in enumerate(keys)]
            packed = pack(seqs, self.pad_id)
            tensors.update({f"m_{k}": t for k, t in packed.items()})
            counts["masked"] = len(packed["t_flat"])
            tokens += int(packed["real"].sum())
        if "cross" in self.components or "contrastive" in self.components:
            n_cross = 0
            for j, source in enumerate(self.roles):
                seqs = [self._cross_seq(rows, i, source, np.random.default_rng([seed, int(k), _CROSS, j]))
                        for i, k in enumerate(keys)]
                packed = pack(seqs, self.pad_id)
                tensors.update({f"x{j}_{k}": t for k, t in packed.items()})
                n_cross += len(packed["t_flat"])
                tokens += int(packed["real"].sum())
            if "cross" in self.components:
                counts["cross"] = n_cross
            if "contrastive" in self.components:
                counts["contrastive"] = 2 * len(keys)
        return Batch(tensors, counts, tokens)

    # ---- scoring ----------------------------------------------------------------------------------
    def _score(self, h: torch.Tensor, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-target NLL and context-free baseline NLL [n] for the targets of one packed group."""
        hf = h.reshape(-1, h.shape[-1])[t["t_flat"]]  # [n, H]
        nll = hf.new_zeros(len(hf), dtype=torch.float32)
        base = torch.zeros_like(nll)
        for role in self.roles:
            sel = t["t_role"] == TYPE[role]
            if not bool(sel.any()):
                continue
            feat, label, comp = t["t_feat"][sel], t["t_label"][sel], t["t_comp"][sel]
            out = self.heads[role](hf[sel]).float()
            if role == "atac":
                masked = (comp == COMP_CODE["masked"]).float()
                shift = self.stat_atac_shift[feat] * masked  # masked queries: the sampling design's odds
                y = label.float()
                nll[sel] = F.binary_cross_entropy_with_logits(out.squeeze(-1) + self.priors[role][feat] + shift, y,
                                                              reduction="none")
                base[sel] = F.binary_cross_entropy_with_logits(self.stat_atac_prior[feat] + shift, y, reduction="none")
                continue
            logits = out + self.priors[role][feat]  # [n, n_bins]
            prior = getattr(self, f"stat_{role}_prior")[feat]
            if role == "rna":  # a masked RNA token is detected: class 0 is impossible there
                off = (comp == COMP_CODE["masked"]).unsqueeze(-1) & (torch.arange(logits.shape[1],
                                                                                  device=logits.device) == 0)
                logits = logits.masked_fill(off, float("-inf"))
                prior = prior.masked_fill(off, float("-inf"))
            nll[sel] = F.cross_entropy(logits, label, reduction="none")
            base[sel] = F.cross_entropy(prior, label, reduction="none")
        return nll, base

    @staticmethod
    def _group(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    def _encode(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        return encode(self.model, self.value_embedding, t["input_ids"], t["token_type_ids"], t["value_ids"],
                      t["context"]).last_hidden_state

    def forward(self, per_token: bool = False, **tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        """tensors: `m_...` the masked input, `x0_...` / `x1_...` each role's own input with the other's
        queries (see `biofm.multiome.tokenize.pack`)."""
        losses: dict[str, torch.Tensor] = {}
        bases: dict[str, torch.Tensor] = {}
        detail: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        out: dict[str, torch.Tensor] = {}
        if "masked" in self.components:
            t = self._group(tensors, "m_")
            nll, base = self._score(self._encode(t), t)
            losses["masked"], bases["masked"] = nll, base
            detail.append(("masked", t["t_role"], nll, base))
        if "cross" in self.components or "contrastive" in self.components:
            nlls, bs, pooled = [], [], []
            for j, _role in enumerate(self.roles):
                t = self._group(tensors, f"x{j}_")
                h = self._encode(t)
                if "cross" in self.components:
                    nll, base = self._score(h, t)
                    nlls.append(nll)
                    bs.append(base)
                    detail.append(("cross", t["t_role"], nll, base))
                pooled.append(context_mean(h, t["context"]))
            if "cross" in self.components:
                losses["cross"], bases["cross"] = torch.cat(nlls), torch.cat(bs)
            if "contrastive" in self.components:
                za, zb = (F.normalize(self.projections[r](p).float(), dim=-1) for r, p in zip(self.roles, pooled,
                                                                                               strict=True))
                sim = za @ zb.T / self.temperature  # [B, B]
                target = torch.arange(len(sim), device=sim.device)
                loss = torch.cat([F.cross_entropy(sim, target, reduction="none"),
                                  F.cross_entropy(sim.T, target, reduction="none")])
                hits = torch.cat([sim.argmax(1) == target, sim.argmax(0) == target]).float()
                losses["contrastive"] = loss
                bases["contrastive"] = torch.full_like(loss, math.log(max(len(sim), 1)))
                out["metric/retrieval_accuracy"] = hits
                out["metric_chance/retrieval_accuracy"] = torch.full_like(hits, 1.0 / max(len(sim), 1))
                out["component/contrastive"], out["component_baseline/contrastive"] = loss, bases["contrastive"]
        if not per_token:
            return {k: v.sum() for k, v in losses.items()}
        # the honest evaluation: the main component for the verdict, and every component per modality
        parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for comp, roles, nll, base in detail:
            for role in self.roles:
                sel = roles == TYPE[role]
                parts.setdefault(f"{comp}_{role}", []).append((nll[sel], base[sel]))
        for key, pieces in parts.items():
            out[f"component/{key}"] = torch.cat([a for a, _ in pieces])
            out[f"component_baseline/{key}"] = torch.cat([b for _, b in pieces])
        out["loss"] = losses[self.main]
        out[f"baseline/{self.reference}"] = bases[self.main]
        return out

    # ---- saving -----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"roles": self.roles, "objectives": self.components, "main": self.main, "reference": self.reference,
                "mask_prob": self.mask_prob, "r_neg": self.r_neg, "temperature": self.temperature,
                "heads_file": HEADS_FILE}

    @staticmethod
    def _extra(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in state.items() if not k.startswith("model.")}

    def save_pretrained(self, path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        path = Path(path)
        state = state_dict if state_dict is not None else self.state_dict()
        super().save_pretrained(path, state)
        save_file(self._extra(state), str(path / HEADS_FILE))
        write_json(path / INFO_FILE, self.describe())

    def load_weights(self, path: Path) -> None:
        super().load_weights(path)
        file = Path(path) / HEADS_FILE
        if not file.is_file():
            raise BiofmError(f"{file}: missing (the heads of a biofm multiome model)")
        heads = load_file(str(file))
        want = set(self._extra(self.state_dict()))
        if set(heads) != want:
            odd = sorted(set(heads) ^ want)
            raise BiofmError(f"{file}: heads do not match the objective ({', '.join(odd[:3])})")
        self.load_state_dict(heads, strict=False)
        name = Path(path).parent.name
        if name.startswith("step-") and name[5:].isdigit():
            self.step_offset, self._train_forwards = int(name[5:]), 0


__all__ = ["HEADS_FILE", "INFO_FILE", "MultiomeObjective", "context_mean", "encode", "main_component"]
