"""Cell pretraining objectives on a stock BERT, combinable with weights.

The backbone is `BertForMaskedLM`: word embeddings are genes, the token-type embedding carries the
expression value bin (0 = no value (<cls>, padding), 1 = value hidden, 2 + b = bin b), and in
gene+value mode the position embeddings are zero and frozen, because a cell is a set of genes: the
saved model then loads with `AutoModelForMaskedLM` and needs only `token_type_ids`. Rank-value mode
(Geneformer) is BERT's own masked LM over gene ids, with positions = ranks.

Value objectives predict a hidden value from the cell's other genes:
- `value_ce`: cross-entropy over the value bins (what the failing run used);
- `value_ordinal`: a cumulative-link (proportional-odds) model over the same bins: neighbouring
  bins share probability mass, and its NLL is still a proper per-target log-loss;
- `value_mse`: squared error on log1p(count);
- `value_nb`: negative-binomial likelihood of the raw count.
`gene_id` predicts masked gene ids (rank-value), `contrastive` is InfoNCE between two random gene
subsets of the same cell (the other cells of the micro-batch are the negatives).

With `gene_prior` (the default) each value head starts at the gene's own context-free distribution:
a learned per-gene offset (bin log-frequencies for `value_ce`, thresholds for `value_ordinal`, the
mean log1p for `value_mse`, NB mean and dispersion for `value_nb`), initialised from the training
cells, with the head's last layer at zero. Step 0 then scores the per-gene baseline and the encoder
only has to learn what the rest of the cell adds. Without it the network must first rediscover every
gene's marginal through its embedding; on small data that alone takes longer than the run (the
failing run's configuration, `gene_prior: false`).

Every component returns a sum over its targets; counts are taken at collate time, so the shared
trainer normalises each by its global count. The health verdict scores the main component with
every target hidden, beside context-free baselines on the same targets (the value-bin frequencies,
each gene's own value distribution, each gene's mean).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from biofm.errors import BiofmError
from biofm.models.sparse_top import hidden_at_targets, target_index
from biofm.train.masking import MaskSpec, mask_batch
from biofm.train.objectives import Batch, Objective

VALUE_OBJECTIVES = ("value_ce", "value_ordinal", "value_nb", "value_mse")
OBJECTIVES = (*VALUE_OBJECTIVES, "gene_id", "contrastive")
NO_VALUE, HIDDEN_VALUE, VALUE_OFFSET = 0, 1, 2  # token-type ids
HEADS_FILE = "biofm_heads.safetensors"
CELL_FILE = "biofm_cell.json"
# per component: (reference baseline, loss unit)
REFERENCE = {"value_ce": "per_gene", "value_ordinal": "per_gene", "value_nb": "per_gene_nb",
             "value_mse": "per_gene_mean", "gene_id": "unigram", "contrastive": "chance"}


def main_component(weights: dict[str, float]) -> str:
    for name in (*VALUE_OBJECTIVES, "gene_id"):
        if weights.get(name, 0) > 0:
            return name
    raise ValueError("needs a masked objective")


def nb_nll(count: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """-log NB(count; mean mu, inverse dispersion theta), elementwise."""
    eps = 1e-8
    log_theta_mu = torch.log(theta + mu + eps)
    ll = (theta * (torch.log(theta + eps) - log_theta_mu) + count * (torch.log(mu + eps) - log_theta_mu)
          + torch.lgamma(count + theta) - torch.lgamma(theta) - torch.lgamma(count + 1.0))
    return -ll


def _cuts_from_marginal(logp: np.ndarray | None, n_bins: int) -> torch.Tensor:
    """Raw thresholds (first cut, then softplus-gaps) at which the ordinal model starts as the given
    value-bin marginal ([K], or [V, K] for one set per gene). Starting at zero instead, Adam moves each
    threshold by about lr per step, so the cuts need thousands of steps to reach the data's spread and
    the loss sits above log(bins) meanwhile."""
    if logp is None:
        return torch.zeros(n_bins - 1)
    p = np.exp(np.asarray(logp, dtype=np.float64)[..., :n_bins])
    cdf = np.clip(np.cumsum(p / p.sum(-1, keepdims=True), -1)[..., :-1], 1e-4, 1 - 1e-4)
    cuts = np.log(cdf / (1 - cdf))
    gaps = np.maximum(np.diff(cuts, axis=-1) - 1e-3, 1e-4)
    raw = np.concatenate([cuts[..., :1], np.log(np.expm1(gaps))], -1)  # softplus^-1
    return torch.as_tensor(raw, dtype=torch.float32)


def _zero_last(head: nn.Sequential) -> nn.Sequential:
    """The head's output starts at 0, so the per-gene prior alone sets the step-0 prediction."""
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


class CellObjective(Objective):
    sparse_top: bool = True  # the main pass needs the last layer only at hidden values (see models.sparse_top)

    def __init__(self, model: PreTrainedModel, *, mode: str, weights: dict[str, float], n_bins: int,
                 mask_prob: float, stats: dict[str, np.ndarray], gene_ids: np.ndarray, special_ids: tuple[int, ...],
                 mask_id: int, pad_id: int, temperature: float = 0.1, projection_dim: int = 128,
                 gene_prior: bool = True):
        super().__init__()
        self.model = model
        self.mode, self.n_bins, self.pad_id = mode, n_bins, pad_id
        self.components = {k: float(v) for k, v in weights.items() if v > 0}
        self.main = main_component(self.components)
        self.reference = REFERENCE[self.main]
        self.loss_unit = "squared error of log1p(count)" if self.main == "value_mse" else "nats per target"
        self.temperature = temperature
        self.advice = tuple(a for a in (
            None if gene_prior else "start each value head at the gene's own value distribution "
                                    "(objectives.gene_prior=true): the loss then starts at the per-gene baseline",
            "try the ordinal or negative-binomial objective (objectives.value_ordinal / value_nb) and per-cell "
            "quantile bins (tokenizer.binning=quantile, n_bins 11-51): one-count-per-class bins are mostly "
            "empty and cross-entropy treats a near miss as a total miss",
            "hide more values (train.mask_prob 0.3) and use a warmup with a lower peak learning rate",
        ) if a)
        self.gene_mask = MaskSpec(mask_id=mask_id, special_ids=special_ids, random_ids=np.asarray(gene_ids),
                                  prob=mask_prob)
        # gene + value mode hides value bins, not genes: the same 80/10/10 rule over the token types
        self.value_mask = MaskSpec(mask_id=HIDDEN_VALUE, special_ids=(), prob=mask_prob,
                                   random_ids=VALUE_OFFSET + np.arange(n_bins))
        self.mask_prob = mask_prob
        hidden = model.config.hidden_size
        self.gene_prior = gene_prior
        heads: dict[str, nn.Module] = {}
        priors: dict[str, nn.Module] = {}
        prime = _zero_last if gene_prior else (lambda head: head)
        if "value_ce" in self.components:
            heads["value_ce"] = prime(nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden),
                                                    nn.Linear(hidden, n_bins)))
            if gene_prior:
                priors["value_ce"] = self._prior(stats["gene_logp"])  # [V, K] log-frequencies
        if "value_ordinal" in self.components:
            heads["value_ordinal"] = prime(nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1)))
            if gene_prior:
                priors["value_ordinal"] = self._prior(_cuts_from_marginal(stats["gene_logp"], n_bins))  # [V, K-1]
            else:
                self.ordinal_cuts = nn.Parameter(_cuts_from_marginal(stats.get("unigram_logp"), n_bins))
        if "value_mse" in self.components:
            heads["value_mse"] = prime(nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1)))
            if gene_prior:
                priors["value_mse"] = self._prior(np.asarray(stats["gene_mean_log1p"])[:, None])  # [V, 1]
        if "value_nb" in self.components:
            heads["value_nb"] = prime(nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2)))
            if gene_prior:  # [V, 2]: log mean, log inverse dispersion
                mu = np.log(np.maximum(np.asarray(stats["gene_nb_mean"], dtype=np.float64), 1e-6))
                theta = np.log(np.asarray(stats["gene_nb_theta"], dtype=np.float64))
                priors["value_nb"] = self._prior(np.stack([mu, theta], 1))
        if "contrastive" in self.components:
            heads["contrastive"] = nn.Linear(hidden, projection_dim)
        self.heads = nn.ModuleDict(heads)
        self.priors = nn.ModuleDict(priors)
        if mode == "gene_value":
            pos = model.bert.embeddings.position_embeddings.weight
            with torch.no_grad():
                pos.zero_()  # a cell is a set of genes: position carries nothing
            pos.requires_grad_(False)
        if "gene_id" not in self.components:  # BERT's gene-id head is unused: keep DDP from waiting on it
            tied = model.get_input_embeddings().weight
            for p in model.cls.parameters():
                if p is not tied:
                    p.requires_grad_(False)
        allowed = torch.zeros(model.config.vocab_size, dtype=torch.bool)
        allowed[torch.as_tensor(np.asarray(gene_ids), dtype=torch.long)] = True
        self.register_buffer("allowed", allowed, persistent=False)
        for key, value in stats.items():
            self.register_buffer(f"stat_{key}", torch.as_tensor(np.asarray(value), dtype=torch.float32),
                                 persistent=False)
        self.n_genes = len(gene_ids)

    @staticmethod
    def _prior(init: np.ndarray | torch.Tensor) -> nn.Embedding:
        """A learned per-gene offset, looked up by gene token id, starting at `init` ([V, D])."""
        weight = torch.as_tensor(np.asarray(init), dtype=torch.float32)
        return nn.Embedding.from_pretrained(weight, freeze=False)

    def _offset(self, name: str, genes: torch.Tensor) -> torch.Tensor | float:
        return self.priors[name](genes) if name in self.priors else 0.0

    # ---- batches ---------------------------------------------------------------------------------
    def collate(self, rows: dict[str, np.ndarray], keys: np.ndarray, *, honest: bool, seed: int) -> Batch:
        """Masks are drawn per cell at the stored row width (so they do not depend on the batch), then
        every column past the batch's last real gene is cut: cells are stored padded to `max_genes`,
        but most have far fewer genes, and attention over padding is pure waste."""
        genes = np.asarray(rows["gene_ids"]).astype(np.int64)  # [B, L]
        values = np.asarray(rows["values"]).astype(np.int64)  # [B, L], -1 at <cls>/padding
        counts = np.asarray(rows["counts"]).astype(np.float32)  # [B, L]
        attention = genes != self.pad_id
        has_value = attention & (values >= 0)
        types = np.where(has_value, values + VALUE_OFFSET, NO_VALUE)
        width = int(np.flatnonzero(attention.any(0)).max(initial=0)) + 1

        def cut(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a[:, :width]))

        tensors: dict[str, torch.Tensor] = {"attention_mask": cut(attention)}
        n: dict[str, int] = {}
        b = len(genes)
        if self.mode == "rank_value":
            inputs, selected = mask_batch(genes, keys, seed, self.gene_mask, honest=honest)
            tensors["input_ids"] = cut(inputs)
            types = np.zeros_like(types)
        else:
            inputs_types, selected = mask_batch(types, keys, seed, self.value_mask, honest=honest, eligible=has_value)
            tensors["input_ids"] = cut(genes)
            tensors["token_type_ids"] = cut(inputs_types)
        sel_t = cut(selected)
        index = target_index(sel_t.numpy())
        tensors.update(target_flat=index["flat"], target_query=index["query"], target_slot=index["slot"])
        tensors["target_genes"] = cut(genes)[sel_t]
        tensors["target_bins"] = cut(values)[sel_t].clamp_min(0)
        tensors["target_counts"] = cut(counts)[sel_t]
        for name in self.components:
            if name != "contrastive":
                n[name] = int(sel_t.sum())
        if "contrastive" in self.components:
            # two disjoint random halves of each cell's genes (after <cls>), each packed to the left with
            # <cls> in front: one forward pass over [2B, L/2] instead of two over masked [B, L]
            halves = []
            for row, key in enumerate(keys):
                rng = np.random.default_rng([seed, int(key), 7])
                pos = rng.permutation(np.flatnonzero(attention[row, 1:]) + 1)
                half = len(pos) // 2
                halves.append((np.sort(pos[:half]), np.sort(pos[half:2 * half])))
            width_v = 1 + max((len(a) for a, _ in halves), default=0)
            view_ids = np.full((2 * b, width_v), self.pad_id, dtype=np.int64)
            view_types = np.zeros((2 * b, width_v), dtype=np.int64)
            for row, pair in enumerate(halves):
                for v, pos in enumerate(pair):
                    idx = np.concatenate([[0], pos])
                    view_ids[v * b + row, :len(idx)] = genes[row, idx]
                    view_types[v * b + row, :len(idx)] = types[row, idx]
            tensors["view_ids"], tensors["view_types"] = torch.from_numpy(view_ids), torch.from_numpy(view_types)
            n["contrastive"] = b
        return Batch(tensors, n, int(attention.sum()))

    def constant_baselines(self) -> dict[str, float]:
        if self.main in ("value_ce", "value_ordinal"):
            return {"uniform": math.log(self.n_bins)}
        if self.main == "gene_id":
            return {"uniform": math.log(self.n_genes)}
        return {}

    # ---- losses ----------------------------------------------------------------------------------
    def _ordinal_logp(self, h: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [n, K] of the cumulative-link model P(y <= k) = sigmoid(cut_k - f(h)); the
        thresholds are the gene's own with `gene_prior`, else shared."""
        f = self.heads["value_ordinal"](h).float()  # [n, 1]
        raw = self.priors["value_ordinal"](genes) if self.gene_prior else self.ordinal_cuts[None, :]  # [n|1, K-1]
        cuts = torch.cumsum(torch.cat([raw[:, :1], F.softplus(raw[:, 1:]) + 1e-3], 1), 1)
        cdf = torch.sigmoid(cuts - f)  # [n, K-1]
        ones = torch.ones_like(f)
        upper = torch.cat([cdf, ones], 1)
        lower = torch.cat([torch.zeros_like(f), cdf], 1)
        return torch.log((upper - lower).clamp_min(1e-12))

    def _pool(self, hidden: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        w = view.unsqueeze(-1).to(hidden.dtype)
        return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, L] gene ids (masked in rank-value mode)
        attention_mask: torch.Tensor,  # [B, L]
        target_flat: torch.Tensor,  # [n] b * L + position of each position to predict (row-major)
        target_query: torch.Tensor,  # [B, Q] those positions per row, padded
        target_slot: torch.Tensor,  # [n] b * Q + rank within the row
        target_genes: torch.Tensor,  # [n] gene id at each selected position
        target_bins: torch.Tensor,  # [n] value bin
        target_counts: torch.Tensor,  # [n] raw count
        token_type_ids: torch.Tensor | None = None,  # [B, L] value tokens (gene+value mode)
        view_ids: torch.Tensor | None = None,  # [2B, Lv] contrastive views: <cls> + half of the genes
        view_types: torch.Tensor | None = None,  # [2B, Lv] their value tokens, nothing hidden
        per_token: bool = False,
    ) -> dict[str, torch.Tensor]:
        index = {"flat": target_flat, "query": target_query, "slot": target_slot}
        h = hidden_at_targets(self.model, self.model.bert, input_ids, attention_mask, index, self.sparse_top,
                              token_type_ids=token_type_ids)  # [n, H]; contrastive views get their own pass
        losses: dict[str, torch.Tensor] = {}
        wanted = [self.main] if per_token else list(self.components)
        for name in wanted:
            if name == "value_ce":
                logits = self.heads[name](h).float() + self._offset(name, target_genes)  # [n, K]
                losses[name] = F.cross_entropy(logits, target_bins, reduction="none")
            elif name == "value_ordinal":
                losses[name] = -self._ordinal_logp(h, target_genes).gather(1, target_bins[:, None]).squeeze(1)
            elif name == "value_mse":
                pred = (self.heads[name](h).float() + self._offset(name, target_genes)).squeeze(1)
                losses[name] = (pred - torch.log1p(target_counts)) ** 2
            elif name == "value_nb":
                out = self.heads[name](h).float() + self._offset(name, target_genes)  # [n, 2]
                mu, theta = torch.exp(out[:, 0].clamp(-15, 15)), torch.exp(out[:, 1].clamp(-10, 10))
                losses[name] = nb_nll(target_counts, mu, theta)
            elif name == "gene_id":
                logits = self.model.cls(h).float().masked_fill(~self.allowed, float("-inf"))
                losses[name] = F.cross_entropy(logits, target_genes, reduction="none")
            elif name == "contrastive":
                losses[name] = self._contrastive(view_ids, view_types)
        if not per_token:
            return {k: v.sum() for k, v in losses.items()}
        return {"loss": losses[self.main], **self._baselines(target_genes, target_bins, target_counts)}

    def _contrastive(self, view_ids: torch.Tensor, view_types: torch.Tensor) -> torch.Tensor:
        mask = view_ids != self.pad_id  # [2B, Lv]
        kw = {"token_type_ids": view_types} if self.mode == "gene_value" else {}
        h = self.model.bert(input_ids=view_ids, attention_mask=mask, **kw).last_hidden_state  # [2B, Lv, H]
        genes_only = mask.clone()
        genes_only[:, 0] = False  # pool the view's genes, not <cls>
        z = F.normalize(self.heads["contrastive"](self._pool(h, genes_only)).float(), dim=-1)  # [2B, P]
        z = z.view(2, -1, z.shape[-1])
        logits = z[0] @ z[1].T / self.temperature  # [B, B]
        target = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target, reduction="none")
                      + F.cross_entropy(logits.T, target, reduction="none"))

    def _baselines(self, genes: torch.Tensor, bins: torch.Tensor, counts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Context-free predictions scored on exactly the model's targets."""
        if self.main in ("value_ce", "value_ordinal"):
            return {"baseline/unigram": -self.stat_unigram_logp[bins],
                    "baseline/per_gene": -self.stat_gene_logp[genes, bins]}
        if self.main == "value_mse":
            y = torch.log1p(counts)
            return {"baseline/global_mean": (self.stat_global_mean_log1p - y) ** 2,
                    "baseline/per_gene_mean": (self.stat_gene_mean_log1p[genes] - y) ** 2}
        if self.main == "value_nb":
            return {"baseline/per_gene_nb": nb_nll(counts, self.stat_gene_nb_mean[genes].clamp_min(1e-6),
                                                   self.stat_gene_nb_theta[genes])}
        return {"baseline/unigram": -self.stat_gene_unigram_logp[genes]}

    # ---- saving ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "objectives": self.components, "main": self.main, "n_bins": self.n_bins,
                "token_types": {"no_value": NO_VALUE, "hidden_value": HIDDEN_VALUE, "first_bin": VALUE_OFFSET},
                "temperature": self.temperature, "gene_prior": self.gene_prior, "heads_file": HEADS_FILE}

    def save_pretrained(self, path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        path = Path(path)
        state = state_dict if state_dict is not None else self.state_dict()
        super().save_pretrained(path, state)
        heads = {k: v.detach().contiguous() for k, v in state.items()
                 if k.startswith(("heads.", "priors.")) or k == "ordinal_cuts"}
        if heads:
            save_file(heads, str(path / HEADS_FILE))
        (path / CELL_FILE).write_text(json.dumps(self.describe(), indent=2) + "\n")

    def load_weights(self, path: Path) -> None:
        super().load_weights(path)
        file = Path(path) / HEADS_FILE
        heads = load_file(str(file)) if file.exists() else {}
        want = {k for k in self.state_dict() if k.startswith(("heads.", "priors.")) or k == "ordinal_cuts"}
        if set(heads) != want:
            odd = sorted(set(heads) ^ want)
            more = " ..." if len(odd) > 3 else ""
            raise BiofmError(f"{file}: heads do not match the objective ({', '.join(odd[:3])}{more})")
        self.load_state_dict(heads, strict=False)  # the encoder's weights came from model.safetensors above
