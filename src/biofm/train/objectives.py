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


def _chunk_step(h: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, banned: torch.Tensor,
                grad_h: torch.Tensor | None, grad_w: torch.Tensor | None, grad_b: torch.Tensor | None,
                start: int) -> torch.Tensor:
    """One chunk of `_ChunkedLinearCrossEntropy`: the chunk's NLL [c], its gradients added in place (fp32)."""
    rows = torch.arange(len(y), device=y.device)
    logits = F.linear(h, w, b).float()  # [c, V]
    logits.index_fill_(1, banned, float("-inf"))
    probs = torch.softmax(logits, 1)  # [c, V]: one fused pass (max, exp-sum, normalise)
    picked = logits[rows, y]  # [c]
    p_y = probs[rows, y]
    # nll = logsumexp - logit = -log p(y); where p(y) underflows (nll > ~87 nats), from the logits
    nll = -torch.log(p_y)
    tiny = p_y < 1e-30
    if logits.is_cuda:  # no host sync per chunk; the extra pass is cheap there
        nll = torch.where(tiny, torch.logsumexp(logits, 1) - picked, nll)
    elif bool(tiny.any()):
        nll[tiny] = torch.logsumexp(logits[tiny], 1) - picked[tiny]
    del logits
    if grad_h is None and grad_w is None and grad_b is None:
        return nll
    dlogits = probs
    dlogits[rows, y] -= 1.0  # softmax minus the one-hot target: d(sum CE)/d logits, [c, V]
    if grad_h is not None:
        grad_h[start:start + len(y)] = (dlogits.to(w.dtype) @ w).float()  # [c, H]
    if grad_w is not None:
        if w.dtype == torch.float32:
            grad_w.addmm_(dlogits.T, h)  # [V, H], in place
        else:
            grad_w += (dlogits.T.to(w.dtype) @ h).float()
    if grad_b is not None:
        grad_b += dlogits.sum(0)
    return nll


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(h_i @ W^T, y_i) over rows, `chunk` rows at a time; the [n, V] logits never exist.

    For each chunk the logits [c, V] are computed, turned into softmax (one fused kernel), and the gradients of
    the summed loss with respect to the chunk's hidden states (dlogits @ W) and to W (dlogits^T @ h)
    are computed right away (the loss is a sum, so its backward is these times the incoming scalar).
    Same FLOPs as the unchunked head (2nHV forward, 4nHV backward), no recomputation, and peak memory
    one [c, V] chunk instead of several [n, V] tensors (logits, log-softmax, their gradient); on CPU
    the chunk's passes also stay in cache. Columns in `banned` (specials, vocabulary padding) get no
    probability, as `masked_fill(~allowed, -inf)` would give them. Under autocast (bf16 on GPU) the
    matmuls run in the autocast dtype, as `head(hidden)` would, with the softmax and the gradient sums in
    fp32; the casts are explicit because in-place accumulation is outside autocast's reach.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, banned: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = hidden.shape[0]
        want_h, want_w, want_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) \
            if want_b and bias is not None else None
        nll = torch.empty(n, dtype=torch.float32, device=hidden.device)
        kind = hidden.device.type
        cdt = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else weight.dtype
        w = weight.to(cdt)  # [V, H] in the matmul dtype (the same tensor without autocast)
        b = bias.to(cdt) if bias is not None else None
        with torch.autocast(kind, enabled=False):
            for start in range(0, n, chunk):
                h = hidden[start:start + chunk].to(cdt)  # [c, H]
                nll[start:start + chunk] = _chunk_step(h, targets[start:start + chunk], w, b, banned, grad_h,
                                                       grad_w, grad_b, start)
        ctx.save_for_backward(*(g if g is not None else torch.empty(0) for g in (grad_h, grad_w, grad_b)))
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(nll)
        return nll.sum(), nll

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_nll: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        want_h, want_w, want_b = ctx.needs_input_grad[:3]
        return ((grad_h * grad_loss).to(h_dtype) if want_h else None,
                (grad_w * grad_loss).to(w_dtype) if want_w else None,
                (grad_b * grad_loss).to(w_dtype) if want_b else None,
                None, None, None)


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                                 targets: torch.Tensor, banned: torch.Tensor, chunk: int
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL, per-row NLL [n], not differentiable) of a linear head over `hidden` [n, H] with
    `weight` [V, H]; `banned` [k] column ids never predicted. Equals
    `F.cross_entropy(F.linear(hidden, weight, bias).float().index_fill(1, banned, -inf), targets)`
    (summed) in value and gradient, without the [n, V] logits (see `_ChunkedLinearCrossEntropy`)."""
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, banned, max(1, int(chunk)))


class CausalLMObjective(Objective):
    """Next-token prediction over packed blocks; every non-padding position after the first is a target.

    Perplexity is exp(total NLL / total predicted tokens) over the whole held-out set, which the
    trainer gets by summing both across batches and processes (never a mean of batch means).

    The LM head and its cross-entropy are where a small decoder with a large vocabulary spends its time
    and memory (GPT-2's 50k tokens: logits [B, L, V] are 400 MB at 8 x 256 tokens). They run fused and
    chunked (`chunked_linear_cross_entropy`, `head_chunk_elements` logits at a time), with the same loss
    and gradients. The trainer turns `sparse_top` off under engines that shard layers (FSDP): a sharded
    head's weight exists whole only inside its own forward, so the head is then called as a module.
    """

    main = "clm"
    reference = "unigram"
    sparse_top: bool = True  # False: the plain head(hidden) -> [n, V] path (sharded engines)
    head_chunk_elements: int = 1 << 23  # logits per chunk (32 MB in fp32): 166 rows of a 50k vocabulary

    def __init__(self, model: PreTrainedModel, pad_id: int, target_ids: np.ndarray, unigram_logp: np.ndarray,
                 token_units: np.ndarray | None = None, unit_name: str | None = None):
        super().__init__()
        self.model = model
        self.components = {"clm": 1.0}
        self.pad_id, self.unit_name = pad_id, unit_name
        self.n_real = len(target_ids)
        allowed = _allowed(model.config.vocab_size, target_ids)
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("banned", torch.nonzero(~allowed).squeeze(1), persistent=False)
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
        head = self.model.get_output_embeddings()
        if self.sparse_top and isinstance(head, nn.Linear):
            chunk = max(1, self.head_chunk_elements // head.weight.shape[0])
            total, nll = chunked_linear_cross_entropy(hidden[keep], head.weight, head.bias, targets, self.banned,
                                                      chunk)  # scalar, [n]
        else:
            logits = head(hidden[keep]).float()  # [n, V]
            logits = logits.masked_fill(~self.allowed, float("-inf"))
            nll = F.cross_entropy(logits, targets, reduction="none")
            total = nll.sum()
        if not per_token:
            return {"clm": total}
        out = {"loss": nll, "baseline/unigram": -self.unigram_logp[targets]}
        if self.units is not None:
            out["units"] = self.units[targets]
        return out


__all__ = ["Batch", "CausalLMObjective", "MaskedLMObjective", "Objective", "chunked_linear_cross_entropy"]
