"""Where models run outside pretraining: `--device auto|cpu|cuda|mps` for every command that runs a model.

Pretraining places itself through accelerate. Every other use (evaluate, embed, fill-mask, generate,
score-variants, analyze) runs inside `on_device(name)`: the models biofm loads go to that device
(`biofm.models.load`), padded batches are built there (`biofm.eval.batching.pad_batches`), forward passes
run under `autocast()` -- bf16 on CUDA, as GPU inference and fine-tuning of these models is normally
run, nothing on CPU / MPS, where bf16 matmuls are slow or unsupported -- and results come back to the
CPU as float32. Outside any scope the device is the CPU, so library calls without one behave exactly
as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Literal

import torch

from biofm.errors import BiofmError

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
DEVICE_HELP = "auto (CUDA, else Apple MPS, else CPU) | cpu | cuda | cuda:N | mps"

_CPU = torch.device("cpu")
_CURRENT: ContextVar[torch.device | None] = ContextVar("biofm_device", default=None)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The torch device for a `--device` value; one line when the asked-for accelerator is absent."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise BiofmError(f"--device {name!r}: expected {DEVICE_HELP}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BiofmError(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} "
                             f"(a CPU build, or no driver); use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise BiofmError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if kind == "mps" and not _mps_available():
        raise BiofmError(f"--device {name}: Apple MPS is not available here; use --device cpu or auto")
    return torch.device(name)


@contextmanager
def on_device(name: str | torch.device) -> Iterator[torch.device]:
    """Run the enclosed model work on `name` (a `--device` value or a torch device)."""
    device = name if isinstance(name, torch.device) else resolve_device(name)
    token = _CURRENT.set(device)
    try:
        yield device
    finally:
        _CURRENT.reset(token)


def current_device() -> torch.device:
    """The device of the innermost `on_device` scope; the CPU outside any."""
    return _CURRENT.get() or _CPU


def autocast(device: torch.device | None = None) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA (weights stay fp32; matmuls and attention run in bf16), nothing elsewhere."""
    device = device or current_device()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


__all__ = ["DEVICE_HELP", "DeviceName", "autocast", "current_device", "on_device", "resolve_device"]
