"""Loading a causal LM with eager attention on a chosen device: :func:`load_model`.

GPT-2 is the target; any Hugging Face causal LM whose attention modules return
their weights under eager attention works the same way.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from inspector.records import Capture

DEVICE_ORDER = ("cuda", "mps", "cpu")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelLoadError(RuntimeError):
    """The model or tokenizer could not be loaded; the message says what to do."""


def available_devices() -> list[str]:
    """Device types usable here, in preference order (``cpu`` is always last)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an unavailable device is a ``ValueError``."""
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
        raise ValueError(f"device {device!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` means float32. MPS is kept in float32 (half precision has given NaN logits there)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
        dtype = _DTYPES[dtype]
    if dtype not in _DTYPES.values():
        raise ValueError(f"unsupported dtype {dtype}; choose one of {sorted(_DTYPES)}")
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("float16 is not supported on the CPU; use float32 or bfloat16")
    return dtype


def library_versions() -> dict[str, str]:
    """Versions recorded in every capture."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "inspector"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def _hub_hint(name: str) -> str:
    return (
        f"could not load model {name!r}: it is not a local folder and the Hugging Face Hub could not be "
        "reached (or has no such model). Pass a local folder holding config.json, the tokenizer files and "
        "the weights, e.g. --model /path/to/gpt2 (download once elsewhere with "
        f"`huggingface-cli download {name} --local-dir gpt2`), or use --random-weights with a folder that "
        "holds config.json and the tokenizer."
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection (``HF_ENDPOINT`` respected) within ``timeout``.

    ``False`` at once when ``HF_HUB_OFFLINE`` is set. Used to fail in a second instead of
    a minute of the hub client's retries when offline.
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ensure_eager(model: PreTrainedModel) -> None:
    impl = getattr(model.config, "_attn_implementation", "eager")
    if impl == "eager":
        return
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        try:
            setter("eager")
        except Exception as exc:  # pragma: no cover - depends on the model class
            raise ValueError(
                f"model uses {impl!r} attention, which returns no attention weights, and could not be switched "
                f"to eager attention ({exc}); load it with attn_implementation='eager'"
            ) from exc
    if getattr(model.config, "_attn_implementation", None) != "eager":
        raise ValueError(
            f"model uses {impl!r} attention, which returns no attention weights; "
            "load it with attn_implementation='eager'"
        )


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


@dataclass
class InspectorModel:
    """A causal LM with eager attention, its tokenizer, and where it came from.

    Use :meth:`generate` to generate with capture. ``model`` and ``tokenizer`` are
    the plain Hugging Face objects.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str = ""
    random_weights: bool = False
    revision: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _ensure_eager(self.model)
        _prepare_tokenizer(self.tokenizer)
        self.model.eval()

    @classmethod
    def from_model(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str | None = None,
        random_weights: bool = False,
    ) -> InspectorModel:
        """Wrap an already loaded model (switched to eager attention, or refused with a message)."""
        return cls(model, tokenizer, name or getattr(model.config, "_name_or_path", "") or type(model).__name__,
                   random_weights=random_weights)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def context_length(self) -> int:
        cfg = self.model.config
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return int(getattr(self.tokenizer, "model_max_length", 1024))

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def num_heads(self) -> int:
        return int(self.model.config.num_attention_heads)

    def generate(self, prompts: str | list[str], **kwargs: Any) -> Capture | list[Capture]:
        """Generate and capture; see :func:`inspector.capture.generate` for the arguments."""
        from inspector.capture import generate

        return generate(self, prompts, **kwargs)

    def describe(self) -> str:
        weights = "RANDOM weights (generated text is meaningless)" if self.random_weights else "pretrained weights"
        n = sum(p.numel() for p in self.model.parameters())
        return (
            f"{self.name} [{type(self.model).__name__}, {n / 1e6:.3g}M parameters, {weights}] "
            f"on {self.device} ({str(self.dtype).replace('torch.', '')})"
        )


def load_model(
    name_or_path: str | os.PathLike[str] = "gpt2",
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    random_weights: bool = False,
    revision: str | None = None,
    seed: int = 0,
    local_files_only: bool | None = None,
) -> InspectorModel:
    """Load a causal LM and its tokenizer with eager attention (attention weights available).

    Args:
        name_or_path: hub id (``"gpt2"``) or a local folder.
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        dtype: ``None``/``"float32"`` (default), ``"bfloat16"``, ``"float16"`` (not on CPU).
            On MPS use float32: GPT-2 has produced NaN logits in half precision there.
        random_weights: build the architecture from the folder's ``config.json`` with random
            weights (seeded by ``seed``); captures record that the weights are random.
        revision: hub revision (branch, tag or commit).
        seed: seed for the random weights.
        local_files_only: never contact the hub (defaults to ``True`` for local folders).

    Raises:
        ValueError: unknown or unavailable device, unsupported dtype.
        ModelLoadError: model or tokenizer not found; the message says how to pass a local folder.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    name = str(name_or_path)
    is_local = Path(name).expanduser().is_dir()
    if is_local:
        name = str(Path(name).expanduser())
    elif Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {name!r} does not exist (or is not a folder)")
    if local_files_only is None:
        local_files_only = is_local or os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "TRUE")
    if not local_files_only and not is_local:
        # a cached copy works offline; otherwise fail fast instead of a minute of retries
        try:
            AutoConfig.from_pretrained(name, revision=revision, local_files_only=True)
            local_files_only = True
        except (OSError, ValueError):
            if not hub_reachable():
                raise ModelLoadError(_hub_hint(name)) from None
    common: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **common)
        if random_weights:
            config = AutoConfig.from_pretrained(name, **common)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
        else:
            model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="eager", dtype=torch.float32, **common)
    except (OSError, ValueError, EnvironmentError) as exc:
        if random_weights and is_local:
            raise ModelLoadError(f"could not build a random-weights model from folder {name!r}: {exc}") from exc
        if is_local:
            raise ModelLoadError(
                f"could not load model from folder {name!r}: {exc}. A folder needs config.json, the tokenizer "
                "files and the weights (or pass --random-weights to use only config.json and the tokenizer)."
            ) from exc
        raise ModelLoadError(_hub_hint(name)) from exc
    model = model.to(device=dev, dtype=torch_dtype)
    return InspectorModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        random_weights=random_weights,
        revision=revision or getattr(model.config, "_commit_hash", None),
        info={"seed": seed} if random_weights else {},
    )
