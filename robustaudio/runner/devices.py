"""Where and in which precision a run's passes happen."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

PRECISIONS = ("fp32", "bf16")


def to_device(tensor: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Host-to-device copy; through pinned memory and asynchronously when the device is a GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def precision_context(precision: str, device: str | torch.device) -> AbstractContextManager:
    """``bf16``: attack passes under torch.autocast in bfloat16 (inputs, projections, the clean
    decision and the records stay float32); ``fp32``: nothing changes."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
