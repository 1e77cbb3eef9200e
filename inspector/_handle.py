"""A loaded model: the Hugging Face model and tokenizer, where they came from, and their sizes.

:class:`ModelHandle` is what the capture engine works with. It sits below both the
engine and :mod:`inspector._model` (whose :class:`~inspector._model.InspectorModel`
extends it with ``generate``), so neither imports the other's module back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from inspector._architectures import check_supported
from inspector._devices import dtype_name
from inspector._gguf import GGUF_INFO_KEY

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_H = TypeVar("_H", bound="ModelHandle")


def _ensure_eager(model: PreTrainedModel) -> None:
    from inspector._compat import attn_implementation  # imports transformers (loaded with any model)

    impl = attn_implementation(model.config, "eager")
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
    if attn_implementation(model.config) != "eager":
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
class ModelHandle:
    """A causal LM with eager attention, its tokenizer, and where it came from.

    ``model`` and ``tokenizer`` are the plain Hugging Face objects. Construction switches
    the model to eager attention (or refuses it with a ``ValueError``), sets a padding
    token and left padding, and puts the model in eval mode. An architecture whose attention
    cannot be captured is refused first (:class:`~inspector._architectures.UnsupportedModelError`).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str = ""
    random_weights: bool = False
    revision: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_supported(self.model)  # before anything touches the model: the message names the architecture
        _ensure_eager(self.model)
        _prepare_tokenizer(self.tokenizer)
        self.model.eval()

    @classmethod
    def from_model(
        cls: type[_H],
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str | None = None,
        random_weights: bool = False,
    ) -> _H:
        """Wrap an already loaded model (switched to eager attention, or refused with a message).

        Raises:
            UnsupportedModelError: an architecture whose attention cannot be captured (named in the message).
        """
        from inspector._compat import name_or_path  # imports transformers (loaded with any model)

        return cls(model, tokenizer, name or name_or_path(model.config) or type(model).__name__,
                   random_weights=random_weights)

    @property
    def model_file(self) -> dict[str, Any]:
        """What a capture records of the file the weights came from (a GGUF file's name, hash and quantisation;
        empty for other models): ``info["gguf"]``, see :class:`inspector._gguf.GGUFInfo`."""
        return dict(self.info.get(GGUF_INFO_KEY) or {})

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

    def describe(self) -> str:
        weights = "RANDOM weights (generated text is meaningless)" if self.random_weights else "pretrained weights"
        quant = self.model_file.get("quantization")
        if quant and not self.random_weights:
            weights += f", read from a {quant} GGUF file as {dtype_name(self.dtype)}"
        n = sum(p.numel() for p in self.model.parameters())
        return (
            f"{self.name} [{type(self.model).__name__}, {n / 1e6:.3g}M parameters, {weights}] "
            f"on {self.device} ({dtype_name(self.dtype)})"
        )
