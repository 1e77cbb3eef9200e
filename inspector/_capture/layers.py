"""Recording the residual stream and value norms of every position during one ``generate`` call.

Both follow the attention weights' exactness rule: a prompt position is recorded from the
prefill, each generated position from the decoding step that consumes it, the last token
from the extra cached step (greedy/sampling) or a full forward (beam search).

* hidden states: the model is asked for ``output_hidden_states`` by a forward pre-hook
  (``generate`` itself keeps nothing), and each forward's ``layer + 1`` states ``[row, q, d]``
  are written straight into a preallocated ``[row, entry, seq, d]`` buffer in ``hidden_dtype``;
* value norms (:mod:`inspector._value_math`): a forward pre-hook on each attention
  module reads the layer's input ``[row, q, d]`` (after its pre-attention norm) and writes
  ``||f_h(x)||`` of the new positions into a ``[row, layer, head, seq]`` float32 buffer.

In beam search rows are reordered at every step, so each forward's new rows are kept per step
instead and gathered through ``beam_indices`` (:meth:`LayerRecorder.beam_sequence`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from inspector._compat import attention_input
from inspector._devices import torch_dtype
from inspector._records.layers import HiddenStates
from inspector._value_math import ValueWeights, value_norms_from_weights, value_weights


def layer_norms(x: torch.Tensor, weights: ValueWeights) -> torch.Tensor:
    """Value norms of attention inputs ``[row, q, d]``: ``[row, head, q]`` float32."""
    rows, q, d = (int(n) for n in x.shape)
    return value_norms_from_weights(x.reshape(rows * q, d), weights).reshape(-1, rows, q).transpose(0, 1)


class GramNorms:
    """Value norms of one layer through per-head Gram matrices, computed once per capture.

    ``||v W_O^h||^2 = v G_h v^T`` with ``G_h = W_O^h W_O^h^T`` (``head_dim x head_dim``), so each step
    costs the value projection and a ``head_dim``-wide quadratic form per head instead of a
    ``d_model``-wide output projection per head (``num_heads`` times fewer multiplications).
    """

    def __init__(self, weights: ValueWeights, device: torch.device):
        d, groups, c = (int(n) for n in weights.w_v.shape)
        self.num_heads = weights.num_heads
        self.repeat = self.num_heads // groups
        self.w_v = weights.w_v.float().to(device).reshape(d, groups * c)
        self.b_v = None if weights.b_v is None else weights.b_v.float().to(device).reshape(groups * c)
        w_o = weights.w_o.double().to(device)  # the Gram matrix in float64: its entries sum d_model products
        self.gram = (w_o @ w_o.transpose(1, 2)).float()  # [head, c, c]
        self.c = c

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[row, q, d]`` attention inputs -> ``[row, head, q]`` float32 value norms."""
        rows, q, d = (int(n) for n in x.shape)
        v = x.reshape(rows * q, d).float() @ self.w_v
        if self.b_v is not None:
            v = v + self.b_v
        v = v.view(rows * q, -1, self.c)
        if self.repeat > 1:
            v = v.repeat_interleave(self.repeat, dim=1)
        sq = (torch.einsum("nhc,hce->nhe", v, self.gram) * v).sum(-1)  # [n, head]
        return sq.clamp_min_(0).sqrt_().view(rows, q, self.num_heads).transpose(1, 2)


#: Architectures whose attention layout :func:`~inspector._value_math.value_weights` misreads
#: (none known: every tested architecture's layout, Falcon's fused ones included, is read).
VALUE_NORMS_UNSUPPORTED: tuple[str, ...] = ()


def check_value_norms_supported(model: nn.Module) -> None:
    """``ValueError`` naming the architecture when its value norms cannot be computed correctly."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in VALUE_NORMS_UNSUPPORTED:
        raise ValueError(f"value norms are not supported for {type(model).__name__} (model_type {model_type!r}): "
                         "its fused attention weights are laid out differently; capture without keep_value_norms")


class LayerRecorder:
    """Buffers and hooks for hidden states and value norms (see the module docstring)."""

    def __init__(self, modules: list[tuple[nn.Module, int]], rows: int, s_max: int, hidden: bool, norms: bool,
                 hidden_dtype: str, beam: bool, device: torch.device):
        self.modules = [m for m, _ in modules]
        self.rows, self.s_max, self.beam, self.device = rows, s_max, beam, device
        self.hidden, self.norms = hidden, norms
        self.hidden_dtype = torch_dtype(hidden_dtype)
        self.weights = [GramNorms(value_weights(m), device) for m in self.modules] if norms else []
        self.num_layers = len(self.modules)
        self.num_heads = self.weights[0].num_heads if self.weights else 0
        # greedy/sampling: one buffer per kind (hidden: one [row, entry, seq, d], or one [row, seq, d_i]
        # per entry when the widths differ); beam search: the prefill and one entry per decoding forward
        self.hidden_buf: torch.Tensor | list[torch.Tensor] | None = None
        self.norm_buf: torch.Tensor | None = None
        if norms and not beam:
            self.norm_buf = torch.zeros((rows, self.num_layers, self.num_heads, s_max), device=device)
        self.hidden_prefill: list[torch.Tensor] = []
        self.hidden_steps: list[list[torch.Tensor]] = []  # per forward: [row, d_i] per entry
        self.norm_prefill: torch.Tensor | None = None  # [row, layer, head, p]
        self.norm_steps: list[torch.Tensor] = []  # per forward: [row, layer, head]
        self._layer_norms: list[torch.Tensor | None] = [None] * self.num_layers

    @property
    def active(self) -> bool:
        return self.hidden or self.norms

    # -- hooks -------------------------------------------------------------------------
    def model_pre_hook(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Asks the model's forward for its hidden states (returned with its output, kept by nobody else)."""
        return args, {**kwargs, "output_hidden_states": True}

    def attention_pre_hook(self, layer: int, end: Callable[[], int]) -> Callable[..., None]:
        """A pre-hook for layer ``layer``'s attention module; ``end()`` is one past the forward's last position."""
        weights = self.weights[layer]

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = attention_input(args, kwargs)
            norms = weights(x)
            if self.norm_buf is not None:
                e = end()
                self.norm_buf[:, layer, :, e - int(x.shape[1]) : e] = norms
            else:
                self._layer_norms[layer] = norms

        return hook

    def after_forward(self, output: Any, end: int, first: bool) -> None:
        """Called by the model's forward hook: stores this forward's states and value norms."""
        if self.hidden:
            states = output.hidden_states
            if states is None:  # pragma: no cover - a model that ignores output_hidden_states
                raise RuntimeError(f"{type(output).__name__} has no hidden_states although they were asked for")
            if self.beam:
                if first:
                    self.hidden_prefill = [h.to(self.hidden_dtype) for h in states]
                else:
                    self.hidden_steps.append([h[:, -1].to(self.hidden_dtype) for h in states])
            else:
                self._write_hidden(states, end)
        if self.norms and self.beam:
            ns = self._layer_norms
            stacked = torch.stack(ns, dim=1)  # type: ignore[arg-type]  # [row, layer, head, q]
            if first:
                self.norm_prefill = stacked
            else:
                self.norm_steps.append(stacked[..., -1])
            self._layer_norms = [None] * self.num_layers

    def _write_hidden(self, states: tuple[torch.Tensor, ...], end: int) -> None:
        if self.hidden_buf is None:
            widths = {int(h.shape[-1]) for h in states}
            if len(widths) == 1:
                shape = (self.rows, len(states), self.s_max, widths.pop())
                self.hidden_buf = torch.zeros(shape, dtype=self.hidden_dtype, device=self.device)
            else:
                self.hidden_buf = [torch.zeros((self.rows, self.s_max, int(h.shape[-1])), dtype=self.hidden_dtype,
                                               device=self.device) for h in states]
        q = int(states[0].shape[1])
        for i, h in enumerate(states):
            target = self.hidden_buf[:, i] if isinstance(self.hidden_buf, torch.Tensor) else self.hidden_buf[i]
            target[:, end - q : end].copy_(h)

    # -- per returned sequence ------------------------------------------------------------
    def sequence(self, j: int, start: int, stop: int,
                 copy: bool = True) -> tuple[HiddenStates | None, torch.Tensor | None]:
        """Row ``j``'s hidden states and value norms over buffer positions ``start .. stop - 1``, on the CPU.

        ``copy=False`` returns views of the buffers where they are on the CPU already.
        """
        def out(t: torch.Tensor) -> torch.Tensor:
            t = t.cpu()
            return t.clone() if copy else t

        hidden: HiddenStates | None = None
        if isinstance(self.hidden_buf, torch.Tensor):
            hidden = out(self.hidden_buf[j, :, start:stop])
        elif self.hidden_buf is not None:
            hidden = tuple(out(b[j, start:stop]) for b in self.hidden_buf)
        norms = None if self.norm_buf is None else out(self.norm_buf[j, :, :, start:stop])
        return hidden, norms

    def beam_sequence(self, first_row: int, pad: int, row_at: torch.Tensor,
                      final: tuple[list[torch.Tensor], torch.Tensor | None]) -> tuple[HiddenStates | None,
                                                                                      torch.Tensor | None]:
        """A returned beam's states and norms: the prefill of its first row, then position ``plen + i`` from
        forward ``i + 1`` on the row that produced token ``i + 1`` (``row_at``), the last from ``final``."""
        steps = int(row_at.shape[0])
        rows = [int(r) for r in row_at[1:]]
        hidden: HiddenStates | None = None
        if self.hidden:
            entries = []
            for e, pre in enumerate(self.hidden_prefill):
                parts = [pre[first_row, pad:], *(self.hidden_steps[i][e][r][None] for i, r in enumerate(rows))]
                if steps:
                    parts.append(final[0][e][None].to(pre.device, pre.dtype))
                entries.append(torch.cat(parts).cpu())
            widths = {int(t.shape[-1]) for t in entries}
            hidden = torch.stack(entries) if len(widths) == 1 else tuple(entries)
        norms = None
        if self.norms:
            assert self.norm_prefill is not None
            parts = [self.norm_prefill[first_row, :, :, pad:],
                     *(self.norm_steps[i][r][..., None] for i, r in enumerate(rows))]
            if steps and final[1] is not None:
                parts.append(final[1][..., None].to(self.norm_prefill.device))
            norms = torch.cat(parts, dim=-1).cpu()
        return hidden, norms

    def final_forward_hooks(self, grabbed: dict[int, torch.Tensor]) -> list[Any]:
        """Pre-hooks that keep each layer's last attention input in ``grabbed`` (beam search's final forward)."""
        def grab(i: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                grabbed[i] = attention_input(args, kwargs)[:, -1:]
            return hook

        return [m.register_forward_pre_hook(grab(i), with_kwargs=True) for i, m in enumerate(self.modules)]

    def final_norms(self, grabbed: dict[int, torch.Tensor]) -> torch.Tensor:
        """``[layer, head]`` value norms of the last position from :meth:`final_forward_hooks`' inputs."""
        return torch.stack([w(grabbed[i])[0, :, 0] for i, w in enumerate(self.weights)])
