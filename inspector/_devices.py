"""Devices and dtypes: which devices exist here, resolving ``"auto"``, dtype names.

Nothing here imports torch at module import (``dtype_name`` and the name tables are used by
argument parsing, which should stay quick); the functions that need torch import it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Model dtypes by name (``load_model(dtype=...)``, ``--dtype``).
DTYPE_NAMES = ("float32", "float16", "bfloat16")


def dtype_name(dtype: Any) -> str:
    """``torch.float16`` (or ``"torch.float16"``, or ``"float16"``) -> ``"float16"``."""
    return str(dtype).replace("torch.", "")


def torch_dtype(name: str) -> torch.dtype:
    """``"float16"`` -> ``torch.float16`` for a name in :data:`DTYPE_NAMES`."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def available_devices() -> list[str]:
    """Device types usable here, in preference order (``cpu`` is always last)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def refuse_unavailable_device(device: object) -> None:
    """A ``ValueError`` for a device that surely cannot exist here, decided without importing torch.

    Apple's ``mps`` exists only on macOS: on any other system ``--device mps`` is refused at once,
    before torch (seconds to import on a small machine) or a model is loaded. Devices that need torch
    to tell (``cuda``) are checked by :func:`resolve_device`.
    """
    name = str(device).strip().lower()
    if name.split(":", 1)[0] == "mps" and sys.platform != "darwin":
        raise ValueError(f"device {name!r} is not available here: Apple's mps exists only on macOS; "
                         "use --device cpu, cuda or auto")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an unavailable device is a ``ValueError``.

    Callers resolve the device before loading anything, so a wrong ``--device`` costs no model load.
    """
    refuse_unavailable_device(device)
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    device = str(device).strip().lower()
    available = available_devices()
    if device == "auto":
        return torch.device(available[0])
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; available here: {', '.join(available)} (or 'auto')") from exc
    if dev.type not in available:
        raise ValueError(f"device {device!r} is not available here; available: {', '.join(available)} (or 'auto')")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"device {device!r} does not exist; this machine has {count} CUDA device(s)")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` means float32. MPS is kept in float32 (half precision has given NaN logits there)."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPE_NAMES)}")
        dtype = torch_dtype(dtype)
    if not isinstance(dtype, torch.dtype) or dtype_name(dtype) not in DTYPE_NAMES:
        raise ValueError(f"unsupported dtype {dtype}; choose one of {sorted(DTYPE_NAMES)}")
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("float16 is not supported on the CPU; use float32 or bfloat16")
    return dtype
