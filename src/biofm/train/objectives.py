"""Training objectives: a model, how rows become a batch, and how a batch is scored.

The shared trainer knows nothing of DNA, cells or text. A modality hands it an `Objective`: a module
that wraps the model (so a DDP/FSDP wrapper sees the whole forward pass), turns rows of the
on-disk dataset into tensors (`collate`) and returns summed losses per component. Returning sums,
with the number of targets counted at collate time, is what makes gradient accumulation and several
processes exact: each component's loss is sum(loss) / (its targets in the whole global batch).

For the health verdict an objective also scores its main component per target in evaluation mode,
beside context-free baselines computed on exactly the same targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from biofm.errors import BiofmError
from biofm.models.mlm import split_mlm
from biofm.models.sparse_top import hidden_at_targets, target_index
from biofm.train.masking import MaskSpec, mask_batch


@dataclass
class Batch:
    tensors: dict[str, torch.Tensor]  # the forward pass's keyword arguments (CPU tensors)
    counts: dict[str, int]  # targets per loss component, for the global normalisation
    tokens: int  # non-padding input tokens, for throughput


class Objective(nn.Module):
    """Base class. Subclasses set `components` (name -> weight), `main`, `reference`, `loss_unit`.

    `forward(..., per_token=True)` (the honest evaluation) returns "loss" [n] for the main component and
    "baseline/NAME" [n] on the same targets; optionally, for objectives of several parts, every other part
    on its own targets as "component/NAME" [m] with "component_baseline/NAME" [m], and per-item rates as
    "metric/NAME" [k] (e.g. retrieval hits) with "metric_chance/NAME" [k]. The trainer sums each over
    batches and ranks; `biofm doctor` reports each part against its own baseline."""

    components: dict[str, float]
    main: str  # the component the health verdict is about
    reference: str  # the context-free baseline the verdict compares with
    loss_unit: str = "nats per token"
    unit_name: str | None = None  # e.g. "base": eval also reports bits per unit
    # modality-specific things to try when the loss does not beat the reference; `biofm doctor` reads
    # them from the run's summary, so the shared doctor knows nothing of DNA or cells
    advice: tuple[str, ...] = ()
    model: PreTrainedModel

    def collate(self, rows: Any, keys: np.ndarray, *, honest: bool, seed: int) -> Batch:
        raise NotImplementedError

    def constant_baselines(self) -> dict[str, float]:
        """Baselines that do not depend on the targets, e.g. the uniform log(V)."""
        return {}

    def save_pretrained(self, path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """A Hugging Face model folder; subclasses with extra heads add their files to it.

        `state_dict` is the objective's full state (e.g. gathered from FSDP shards); default: this module's."""
        state = state_dict if state_dict is not None else self.state_dict()
        model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        self.model.save_pretrained(path, state_dict=model_state)

    def load_weights(self, path: Path) -> None:
        load_strictly(self.model, load_file(str(path / "model.safetensors")), path / "model.safetensors")


def load_strictly(module: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Load every tensor of `weights` into `module` and refuse anything else: an unexpected key, or a missing
    one that is not tied to (the same storage as) a loaded one, such as a decoder tied to the embeddings."""
    missing, unexpected = module.load_state_dict(weights, strict=False)
    own = module.state_dict()
    loaded = {own[k].data_ptr() for k in weights if k in own}
    missing = [k for k in missing if own[k].data_ptr() not in loaded]
    if missing or unexpected:
        what = "; ".join(f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                         for name, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
        raise BiofmError(f"{source}: weights do not match the model ({what})")


def _allowed(vocab_size: int, target_ids: np.ndarray | torch.Tensor | None) -> torch.Tensor:
    """Targets are never specials or vocabulary padding rows: those get no probability, so the
    loss starts at log(real vocabulary) and is comparable with the uniform baseline."""
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    if target_ids is not None:
        allowed[:] = False
        allowed[torch.as_tensor(np.asarray(target_ids), dtype=torch.long)] = True
    return allowed


class MaskedLMObjective(Objective):
    """BERT masked-LM: cross-entropy at the selected positions, logits computed only there.

    With `sparse_top` (the trainer turns it off under engines that shard layers) the last encoder
    layer is computed only at the selected positions as well: see biofm.models.sparse_top.
    """

    main = "mlm"
    reference = "unigram"
    sparse_top: bool = True

    def __init__(self, model: PreTrainedModel, mask: MaskSpec, pad_id: int, unigram_logp: np.ndarray,
                 token_units: np.ndarray | None = None, unit_name: str | None = None):
        super().__init__()
        self.model = model
        self.components = {"mlm": 1.0}
        self.mask, self.pad_id, self.unit_name = mask, pad_id, unit_name
        self.n_real = len(mask.random_ids)
        self.register_buffer("allowed", _allowed(model.config.vocab_size, mask.random_ids), persistent=False)
        self.register_buffer("unigram_logp", torch.as_tensor(unigram_logp, dtype=torch.float32), persistent=False)
        units = torch.as_tensor(token_units, dtype=torch.float32) if token_units is not None else None
        self.register_buffer("units", units, persistent=False)

    def collate(self, rows: np.ndarray, keys: np.ndarray, *, honest: bool, seed: int) -> Batch:
        ids = np.asarray(rows)
        inputs, selected = mask_batch(ids, keys, seed, self.mask, honest=honest)
        index = target_index(selected)
        attention = torch.from_numpy(ids != self.pad_id)
        tensors = {
            "input_ids": torch.from_numpy(inputs.astype(np.int64)),
            "attention_mask": attention,
            "target_flat": index["flat"],
            "target_query": index["query"],
            "target_slot": index["slot"],
            "targets": torch.from_numpy(ids[selected].astype(np.int64)),
        }
        return Batch(tensors, {"mlm": len(index["flat"])}, int(attention.sum()))

    def constant_baselines(self) -> dict[str, float]:
        return {"uniform": math.log(self.n_real)}

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, L] masked inputs
        attention_mask: torch.Tensor,  # [B, L]
        target_flat: torch.Tensor,  # [n] b * L + position of each position to predict (row-major)
        target_query: torch.Tensor,  # [B, Q] those positions per row, padded
        target_slot: torch.Tensor,  # [n] b * Q + rank within the row
        targets: torch.Tensor,  # [n] original token ids at those positions
        per_token: bool = False,
    ) -> dict[str, torch.Tensor]:
        encoder, head = split_mlm(self.model)
        index = {"flat": target_flat, "query": target_query, "slot": target_slot}
        hidden = hidden_at_targets(self.model, encoder, input_ids, attention_mask, index, self.sparse_top)  # [n, H]
        logits = head(hidden).float()  # [n, V]: logits only where needed
        logits = logits.masked_fill(~self.allowed, float("-inf"))
        nll = F.cross_entropy(logits, targets, reduction="none")  # [n_selected]
        if not per_token:
            return {"mlm": nll.sum()}
        out = {"loss": nll, "baseline/unigram": -self.unigram_logp[targets]}
        if self.units is not None:
            out["units"] = self.units[targets]
        return out


class CausalLMObjective(Objective):
    """Next-token prediction over packed blocks; every non-padding position after the first is a target.

    Perplexity is exp(total NLL / total predicted tokens) over the whole held-out set, which the
    trainer gets by summing both across batches and processes (never a mean of batch means).
    """

    main = "clm"
    reference = "unigram"

    def __init__(self, model: PreTrainedModel, pad_id: int, target_ids: np.ndarray, unigram_logp: np.ndarray,
                 token_units: np.ndarray | None = None, unit_name: str | None = None):
        super().__init__()
        self.model = model
        self.components = {"clm": 1.0}
        self.pad_id, self.unit_name = pad_id, unit_name
        self.n_real = len(target_ids)
        self.register_buffer("allowed", _allowed(model.config.vocab_size, target_ids), persistent=False)
        self.register_buffer("unigram_logp", torch.as_tensor(unigram_logp, dtype=torch.float32), persistent=False)
        units = torch.as_tensor(token_units, dtype=torch.float32) if token_units is not None else None
        self.register_buffer("units", units, persistent=False)

    def collate(self, rows: np.ndarray, keys: np.ndarray, *, honest: bool, seed: int) -> Batch:
        ids = torch.from_numpy(np.asarray(rows).astype(np.int64))
        attention = ids != self.pad_id
        labels = ids[:, 1:].masked_fill(~attention[:, 1:], -100)  # [B, L-1]
        return Batch({"input_ids": ids, "attention_mask": attention, "labels": labels},
                     {"clm": int((labels != -100).sum())}, int(attention.sum()))

    def constant_baselines(self) -> dict[str, float]:
        return {"uniform": math.log(self.n_real)}

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, L]
        attention_mask: torch.Tensor,  # [B, L]
        labels: torch.Tensor,  # [B, L-1] next tokens, -100 where there is none
        per_token: bool = False,
    ) -> dict[str, torch.Tensor]:
        base = self.model.base_model
        hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]  # [B, L-1, H]
        keep = labels != -100
        targets = labels[keep]  # [n]
        logits = self.model.get_output_embeddings()(hidden[keep]).float()  # [n, V]
        logits = logits.masked_fill(~self.allowed, float("-inf"))
        nll = F.cross_entropy(logits, targets, reduction="none")
        if not per_token:
            return {"clm": nll.sum()}
        out = {"loss": nll, "baseline/unigram": -self.unigram_logp[targets]}
        if self.units is not None:
            out["units"] = self.units[targets]
        return out


__all__ = ["Batch", "CausalLMObjective", "MaskedLMObjective", "Objective"]
