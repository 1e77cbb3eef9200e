"""Loading a causal LM with eager attention on a chosen device: :func:`load_model`.

GPT-2 is the target; any Hugging Face causal LM whose attention modules return
their weights under eager attention works the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inspector.devices import available_devices, resolve_device, resolve_dtype
from inspector.handle import ModelHandle
from inspector.provenance import library_versions

if TYPE_CHECKING:  # pragma: no cover
    from inspector.records import Capture

# Defined in the low modules above; importable from here as before.
__all__ = [
    "InspectorModel",
    "ModelLoadError",
    "available_devices",
    "hub_reachable",
    "library_versions",
    "load_model",
    "resolve_device",
    "resolve_dtype",
]


class ModelLoadError(RuntimeError):
    """The model or tokenizer could not be loaded; the message says what to do."""


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


class InspectorModel(ModelHandle):
    """A causal LM with eager attention, its tokenizer, and where it came from.

    Use :meth:`generate` to generate with capture, :meth:`score` to score a given continuation.
    ``model`` and ``tokenizer`` are the plain Hugging Face objects; see :class:`inspector.handle.ModelHandle`.
    """

    def generate(self, prompts: str | list[str], **kwargs: Any) -> Capture | list[Capture]:
        """Generate and capture; see :func:`inspector.capture.generate` for the arguments."""
        from inspector.capture.engine import generate

        return generate(self, prompts, **kwargs)

    def score(self, prompt: str | list[str], continuation: str | list[str], **kwargs: Any) -> Capture | list[Capture]:
        """Teacher-force ``continuation`` after ``prompt``; see :func:`inspector.capture.forced.score`."""
        from inspector.capture.forced import score

        return score(self, prompt, continuation, **kwargs)


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
            model = AutoModelForCausalLM.from_pretrained(
                name, attn_implementation="eager", dtype=torch.float32, **common
            )
    except (OSError, ValueError) as exc:
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
