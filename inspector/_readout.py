"""How a causal LM turns a residual-stream state into logits: its final norm, output projection and head.

:func:`find_readout` finds the pieces through the model's own accessors, not GPT-2
attribute names, so the logit lens works for any Hugging Face causal LM that follows
the library's conventions (checked for GPT-2, GPT-J, GPT-NeoX, OPT, Llama, Mistral,
Qwen2, Gemma and Gemma 2):

* the head is ``model.get_output_embeddings()`` (tied or untied);
* the final norm is the one normalisation module registered *directly* on the
  decoder, ``model.get_decoder()`` (``ln_f``, ``norm``, ``final_layer_norm``, ...).
  Per-layer norms live inside the layer list, so they are never direct children;
* the output projection is a ``Linear`` registered directly on the decoder that maps
  the hidden size to the head's input size, looked for only when those sizes differ
  (OPT's ``project_out``, e.g. opt-350m);
* logit soft-capping (``config.final_logit_softcapping``, Gemma 2) is applied after the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Names of the final norm, used only to choose when a decoder registers several norms.
_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_norm", "norm_f")


@dataclass(frozen=True)
class Readout:
    """The path from a residual-stream state ``[..., d_model]`` to logits ``[..., vocab]``.

    Attributes:
        norm: the final norm (``None``: the model has none, e.g. a post-norm OPT).
        project: a projection applied after the norm (``None`` for most models).
        head: the unembedding, ``model.get_output_embeddings()``.
        softcap: ``c`` of ``c * tanh(logits / c)`` applied to the logits, or ``None``.
    """

    norm: nn.Module | None
    project: nn.Module | None
    head: nn.Module
    softcap: float | None = None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    @property
    def vocab_size(self) -> int:
        weight = getattr(self.head, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(f"the output head {type(self.head).__name__} has no 2-d weight")
        return int(weight.shape[0])

    def finalise(self, hidden: torch.Tensor) -> torch.Tensor:
        """The final norm and projection: ``[..., d_model]`` -> ``[..., d_head_in]``."""
        if self.norm is not None:
            hidden = self.norm(hidden)
        if self.project is not None:
            hidden = self.project(hidden)
        return hidden

    def logits(self, hidden: torch.Tensor, finalised: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 logits ``[..., vocab]`` of states ``[..., d]``.

        ``finalised=True`` skips the norm and projection: for states that already had
        them applied, like the last entry of ``output_hidden_states``. ``out``: a float32
        ``[n, vocab]`` buffer to write ``[n, d]`` states' logits into when the head is a
        float32 ``Linear`` (reusing it spares the page faults of a fresh large array per
        call); otherwise it is ignored, so always use the returned tensor.
        """
        hidden = hidden.to(device=self.device, dtype=self.dtype)
        with torch.no_grad():
            x = hidden if finalised else self.finalise(hidden)
            head = self.head
            if (out is not None and isinstance(head, nn.Linear) and x.dim() == 2 and head.weight.dtype == torch.float32
                    and out.dtype == torch.float32 and tuple(out.shape) == (x.shape[0], head.out_features)):
                if head.bias is None:
                    logits = torch.mm(x, head.weight.t(), out=out)
                else:
                    logits = torch.addmm(head.bias, x, head.weight.t(), out=out)
            else:
                logits = head(x).float()
            if self.softcap is not None:
                logits = logits.div_(self.softcap).tanh_().mul_(self.softcap)
        return logits


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or type(module).__name__.endswith("Norm")


def _in_features(head: nn.Module) -> int:
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"the output head {type(head).__name__} has no 2-d weight; cannot use it for the lens")
    return int(weight.shape[1])


def _hidden_size(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for attr in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    return None


def find_readout(model: nn.Module) -> Readout:
    """The final norm, output projection and head of a Hugging Face causal LM.

    Raises:
        ValueError: naming the model class, when the head or the final norm cannot be
            found (build a :class:`Readout` by hand for such a model).
    """
    name = type(model).__name__
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, nn.Module):
        raise ValueError(f"{name} has no output embeddings (get_output_embeddings() is None); is it a causal LM?")
    get_decoder = getattr(model, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    if not isinstance(decoder, nn.Module) or decoder is model:
        raise ValueError(f"{name}: get_decoder() gives no separate decoder module, so its final norm is unknown; "
                         "build inspector._readout.Readout(norm=..., project=..., head=...) by hand")
    norms = [(n, m) for n, m in decoder.named_children() if _is_norm(m)]
    if len(norms) > 1:
        norms = [(n, m) for n, m in norms if n in _NORM_NAMES]
    if len(norms) != 1:
        raise ValueError(
            f"cannot find the final norm of {name}: its decoder {type(decoder).__name__} registers "
            f"{'no' if not norms else 'several'} norm module(s) directly; build "
            "inspector._readout.Readout(norm=..., head=model.get_output_embeddings()) by hand "
            "(norm=None for a model without a final norm, e.g. a post-norm OPT)"
        )
    project = None
    d_model, d_in = _hidden_size(model), _in_features(head)
    if d_model is not None and d_model != d_in:
        linears = [m for m in decoder.children()
                   if isinstance(m, nn.Linear) and m.in_features == d_model and m.out_features == d_in]
        if len(linears) != 1:
            raise ValueError(f"{name}: the head takes {d_in} features but the hidden size is {d_model}, and no "
                             "single projection between them is registered on the decoder")
        project = linears[0]
    config = getattr(model, "config", None)
    softcap = getattr(config, "final_logit_softcapping", None)
    return Readout(norm=norms[0][1], project=project, head=head, softcap=float(softcap) if softcap else None)
