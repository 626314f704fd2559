"""Training objectives as modules, so a DDP/FSDP wrapper sees the whole forward pass."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from biofm.models.mlm import split_mlm


class MaskedLMObjective(nn.Module):
    """Summed cross-entropy at the selected positions; the caller divides by the global count.

    Returning a sum (not a mean) is what makes gradient accumulation and several processes exact:
    the loss of a global batch is sum(NLL) / (masked tokens in the whole global batch).
    """

    def __init__(self, model: PreTrainedModel, target_ids: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        # Targets are never specials or vocabulary padding rows: give those no probability, so the
        # loss starts at log(real vocabulary) and is comparable with the uniform baseline.
        allowed = torch.ones(model.config.vocab_size, dtype=torch.bool)
        if target_ids is not None:
            allowed[:] = False
            allowed[target_ids] = True
        self.register_buffer("allowed", allowed, persistent=False)

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, L] masked inputs
        attention_mask: torch.Tensor,  # [B, L]
        selected: torch.Tensor,  # [B, L] bool, positions to predict
        targets: torch.Tensor,  # [n_selected] original token ids at those positions
        per_token: bool = False,
    ) -> torch.Tensor:
        encoder, head = split_mlm(self.model)
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, H]
        logits = head(hidden[selected]).float()  # [n_selected, V]: logits only where needed
        logits = logits.masked_fill(~self.allowed, float("-inf"))
        nll = F.cross_entropy(logits, targets, reduction="none")  # [n_selected]
        return nll if per_token else nll.sum()
