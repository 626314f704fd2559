"""Settings of the shared trainer (modality-agnostic)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from biofm.config import Schema


class TrainConfig(Schema):
    steps: PositiveInt = 1000
    global_batch_tokens: PositiveInt = Field(
        65536, description="tokens per optimizer step over all processes; accumulation is derived"
    )
    micro_batch_size: PositiveInt = Field(8, description="sequences per forward pass per process")
    lr: float = Field(1e-4, gt=0)
    schedule: Literal["inverse_sqrt", "cosine", "constant"] = "inverse_sqrt"
    warmup_steps: int = Field(100, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = Field(1.0, ge=0, description="max global grad norm; 0 disables")
    mask_prob: float = Field(0.15, gt=0, lt=1)
    log_every: PositiveInt = 10
    eval_every: PositiveInt = 100
    eval_max_blocks: PositiveInt = Field(512, description="cap on held-out blocks per evaluation")
    checkpoint_every: PositiveInt = 500
    keep_checkpoints: PositiveInt = 2
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    compile: bool = False
    sparse_top: bool = Field(
        True, description="masked LM: compute the last encoder layer only at masked positions (exact; "
        "full layer under FSDP and for architectures without support)"
    )
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = torch's default")
