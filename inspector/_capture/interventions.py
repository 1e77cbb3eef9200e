"""Interventions during generation: parts switched off (ablation) and residual states written in (patching).

Both act on the prompt's forward pass and on every generated step, so the KV cache holds the keys and
values that a full forward pass with the same intervention would compute. Where each part is comes from
:func:`inspector._model_parts.layer_parts`.

Ablation (``ablate=[...]``, names as in :mod:`inspector._components`), for every position:

* ``"L5.H3"``: head 3's slice ``[..., 3 * head_dim : 4 * head_dim]`` of layer 5's attention output
  projection's *input* (a forward pre-hook on ``out_proj``), so the head adds nothing, or a constant;
* ``"L5.attn"``: the output projection's *output* ``[row, seq, width]`` (its bias included): what the
  attention block adds to the residual stream (before Gemma 2's post-norm);
* ``"L5.mlp"``: the MLP's output ``[row, seq, width]``, what it adds (before a post-norm).

``ablate_mode="zero"`` replaces those values by zeros. ``"mean"`` replaces them, at every position of
the prompt and of every generated step, by their mean over the prompt's tokens (padding excluded),
taken per sequence from the prompt's own forward pass of this run (so a part in a later layer is
averaged with the earlier layers' ablations already applied). Beams and sampled sequences of one
prompt share its mean.

Patching (``patch=[(layer, position), ...]``, ``patch_from=`` a capture): the output of block ``layer``
(the residual stream after that layer, ``[width]``) at prompt token ``position`` (0 = the first token of
the unpadded prompt) is replaced by the source capture's state at the same layer and position, in the
prompt's forward pass only (generated steps read it through the KV cache, as in causal tracing, Meng et
al. 2022). The source states are the capture's stored ``hidden_states`` when it kept them in float32
and no patched layer is the last (whose stored entry is after the final norm); otherwise one
teacher-forced pass of this model over the source's prompt tokens. Source and run must come from the
same model and have prompts of the same length; every prompt of a batch is patched alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from inspector._components import Component, parse_components
from inspector._model_parts import LayerParts, layer_parts

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.settings import GenerationSettings
    from inspector._handle import ModelHandle
    from inspector._records.capture import Capture

@dataclass(frozen=True)
class InterventionPlan:
    """The interventions of one run, checked against the model.

    Attributes:
        components: the ablated parts, expanded (``"L7.H*"`` -> every head), in order.
        mode: ``"zero"`` or ``"mean"``.
        patch: ``(layer, position)`` pairs, in the order given.
        states: ``[len(patch), width]`` source states, one row per pair (float32, on the model's device);
            ``None`` without patching.
        record: what :attr:`inspector._records.capture.CaptureMeta.interventions` stores (JSON-serialisable).
    """

    components: tuple[Component, ...]
    mode: str
    patch: tuple[tuple[int, int], ...]
    states: torch.Tensor | None
    record: dict[str, Any]


def plan(model: ModelHandle, settings: GenerationSettings, prompt_lens: Sequence[int],
         source: Capture | None = None) -> InterventionPlan | None:
    """The run's interventions checked against the model and the prompts; ``None`` when there are none.

    Args:
        model: the model.
        settings: ``ablate``, ``ablate_mode`` and ``patch`` are read; ``patch_from`` (a path) is recorded as
            the source's file.
        prompt_lens: the unpadded length of each prompt of the batch.
        source: the capture ``patch`` takes its states from (a file is read by the caller:
            :func:`inspector.load_capture`).

    Raises:
        ValueError: an unknown layer or head, patch pairs without a source, a source from another model or
            with a prompt of another length, a position outside the prompt; said before any forward pass.
    """
    components = parse_components(settings.ablate, model.num_layers, model.num_heads)
    pairs = settings.patch_pairs
    if source is not None and not pairs:
        raise ValueError("patch_from is given but patch names no (layer, position) pair; pass patch=[(3, 5)] "
                         "(CLI: --patch 3:5)")
    if not components and not pairs:
        return None
    record: dict[str, Any] = {}
    if components:
        record.update(ablate=[c.name for c in components], ablate_mode=settings.ablate_mode)
    states = None
    if pairs:
        if source is None:
            if settings.patch_from is not None:
                raise ValueError(f"patch_from={settings.patch_from!r} is a file: load it first and pass the "
                                 "capture, patch_from=inspector.load_capture(path)")
            raise ValueError("patch needs a source: pass patch_from=<a Capture of this model> "
                             "(CLI: --patch-from CAPTURE)")
        _check_source(model, source, pairs, prompt_lens)
        states, how = source_states(model, source, pairs)
        record.update(patch=[list(p) for p in pairs], patch_source={
            "path": settings.patch_from, "model": source.meta.model, "prompt_text": source.prompt_text,
            "prompt_len": source.prompt_len, "prompt_ids": source.token_ids[: source.prompt_len].tolist(),
            "created": source.meta.created, "states": how})
    return InterventionPlan(components, settings.ablate_mode, pairs, states, record)


def _check_source(
    model: ModelHandle, cap: Capture, pairs: Sequence[tuple[int, int]], prompt_lens: Sequence[int]
) -> None:
    """Refuse a patch source from another model, of another prompt length, or pairs outside the model/prompt."""
    if cap.meta.model != model.name or cap.meta.random_weights != model.random_weights:
        raise ValueError(f"the patch source was captured with model {cap.meta.model!r}"
                         f"{' (random weights)' if cap.meta.random_weights else ''}, this run uses {model.name!r}"
                         f"{' (random weights)' if model.random_weights else ''}; patch from a capture of this model")
    embed: Any = model.model.get_input_embeddings()
    width = int(embed.weight.shape[-1])
    hidden = cap.hidden_states
    if isinstance(hidden, torch.Tensor) and int(hidden.shape[-1]) != width:
        raise ValueError(f"the patch source's residual stream is {int(hidden.shape[-1])} wide, this model's "
                         f"{width}; patch from a capture of this model")
    for layer, pos in pairs:
        if layer >= model.num_layers:
            raise ValueError(f"patch {layer}:{pos}: the model has layers 0-{model.num_layers - 1}")
        if pos >= cap.prompt_len:
            raise ValueError(f"patch {layer}:{pos}: the source's prompt has tokens 0-{cap.prompt_len - 1}")
    for i, n in enumerate(prompt_lens):
        if n != cap.prompt_len:
            which = "the prompt" if len(prompt_lens) == 1 else f"prompt {i}"
            raise ValueError(f"{which} has {n} tokens, the patch source's prompt {cap.prompt_len}: patched "
                             "positions must mean the same tokens, so give a prompt of the same length (change "
                             "tokens, do not add or drop them)")


@torch.no_grad()
def source_states(model: ModelHandle, cap: Capture, pairs: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, str]:
    """``([len(pairs), width] float32 states, "stored" or "forward")``: the output of block ``layer`` at prompt
    token ``position`` of ``cap``, from its stored float32 ``hidden_states`` where they are exact, else from
    one forward pass of ``model`` over the source's prompt tokens."""
    dev = model.device
    hidden = cap.hidden_states
    last = model.num_layers - 1
    if (isinstance(hidden, torch.Tensor) and hidden.dtype == torch.float32
            and all(layer < last for layer, _ in pairs)):
        return torch.stack([hidden[layer + 1, pos] for layer, pos in pairs]).float().to(dev), "stored"
    parts = layer_parts(model.model)
    wanted = sorted({layer for layer, _ in pairs})
    grabbed: dict[int, torch.Tensor] = {}

    def grab(layer: int) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            grabbed[layer] = _main(output)[0].float()

        return hook

    handles = [parts[layer].block.register_forward_hook(grab(layer)) for layer in wanted]
    try:
        ids = cap.token_ids[: cap.prompt_len][None].to(dev)
        model.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([grabbed[layer][pos] for layer, pos in pairs]), "forward"


def _main(output: Any) -> torch.Tensor:
    """A module's main output: the tensor, or the first entry of a tuple."""
    return output if isinstance(output, torch.Tensor) else output[0]


def _with_main(output: Any, value: torch.Tensor) -> Any:
    return value if isinstance(output, torch.Tensor) else (value, *output[1:])


class Intervener:
    """The hooks of one run; :meth:`attached` registers them, :meth:`single_row` narrows them to one sequence.

    Args:
        model: the Hugging Face model.
        plan: the checked interventions.
        prompt_mask: ``[rows, p_max]`` attention mask of the rows ``generate`` runs (prompts repeated for beams
            and returned sequences, prompt-major), 1 on prompt tokens, 0 on left padding.
    """

    def __init__(self, model: nn.Module, plan: InterventionPlan, prompt_mask: torch.Tensor) -> None:
        self.parts = layer_parts(model)
        self.plan = plan
        self.mask = prompt_mask.bool()
        self.rows, self.p_max = (int(n) for n in prompt_mask.shape)
        self.pads = (self.p_max - self.mask.long().sum(1)).tolist()
        self.means: dict[tuple[str, int], torch.Tensor] = {}  # (kind, layer) -> [rows, features]
        self.calls: dict[tuple[str, int], int] = {}
        self._row: int | None = None  # single_row: the batch row whose prompt a lone, unpadded sequence extends

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Every hook registered for the duration, removed however the block ends."""
        handles = []
        try:
            by_layer: dict[int, list[int]] = {}
            for c in self.plan.components:
                parts = self.parts[c.layer]
                if c.kind == "head":
                    assert c.head is not None
                    by_layer.setdefault(c.layer, []).append(c.head)
                else:
                    # prepended: transformers' own output hooks (the recorded hidden states) see the new output
                    module = parts.out_proj if c.kind == "attn" else parts.mlp
                    handles.append(module.register_forward_hook(self._output_hook(c.kind, c.layer), prepend=True))
            for layer, heads in by_layer.items():
                handles.append(self.parts[layer].out_proj.register_forward_pre_hook(
                    self._head_hook(layer, heads, self.parts[layer]), prepend=True))
            for layer in sorted({layer for layer, _ in self.plan.patch}):
                handles.append(self.parts[layer].block.register_forward_hook(self._patch_hook(layer), prepend=True))
            yield
        finally:
            for h in handles:
                h.remove()

    @contextlib.contextmanager
    def single_row(self, row: int) -> Iterator[None]:
        """Forward passes in the block run one unpadded sequence from position 0 that extends batch row
        ``row``'s prompt (a returned beam's full pass): the means of that row, patches at unpadded positions."""
        self._row = row
        try:
            yield
        finally:
            self._row = None

    # -- the replacement values -------------------------------------------------------------
    def _first(self, key: tuple[str, int], x: torch.Tensor) -> bool:
        """Count the call; on the first (the prompt's pass over ``[rows, p_max, ...]``) check its shape."""
        n = self.calls.get(key, 0)
        self.calls[key] = n + 1
        if n == 0 and self._row is None and tuple(x.shape[:2]) != (self.rows, self.p_max):
            raise RuntimeError(f"the first forward pass covered {tuple(x.shape[:2])} [row, position], the prompts "
                               f"{(self.rows, self.p_max)}")
        return n == 0 and self._row is None

    def _replacement(self, key: tuple[str, int], x: torch.Tensor) -> torch.Tensor:
        """What the values ``x`` ``[rows, q, features]`` (OPT's MLP: ``[rows * q, features]``) are replaced with
        (a new tensor of their shape)."""
        if self.plan.mode == "zero":
            return torch.zeros_like(x)
        if x.dim() == 2:  # rows and positions flattened
            rows = 1 if self._row is not None else self.rows
            return self._replacement(key, x.view(rows, -1, int(x.shape[-1]))).view(x.shape)
        if self._first(key, x):
            m = self.mask.to(x.device)[..., None]
            total = (x.float() * m).sum(1)
            self.means[key] = (total / m.sum(1).clamp_min(1)).to(x.dtype)  # [rows, features]
        mean = self.means.get(key)
        if mean is None:
            raise RuntimeError("mean ablation needs the prompt's pass first")
        mean = mean[self._row : self._row + 1] if self._row is not None else mean
        if int(mean.shape[0]) != int(x.shape[0]):
            raise RuntimeError(f"mean ablation: {int(x.shape[0])} rows in a pass, {int(mean.shape[0])} prompts")
        return mean[:, None, :].expand_as(x).clone()

    # -- hooks ------------------------------------------------------------------------------
    def _head_hook(self, layer: int, heads: list[int], parts: LayerParts) -> Callable[[nn.Module, Any], Any]:
        d = parts.head_dim
        cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads])

        def hook(module: nn.Module, args: Any) -> Any:
            x = args[0]
            cols_dev = cols.to(x.device)
            new = x.clone()
            new[..., cols_dev] = self._replacement(("heads", layer), x[..., cols_dev])
            return (new, *args[1:])

        return hook

    def _output_hook(self, kind: str, layer: int) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            return _with_main(output, self._replacement((kind, layer), _main(output)))

        return hook

    def _patch_hook(self, layer: int) -> Callable[[nn.Module, Any, Any], Any]:
        assert self.plan.states is not None
        mine = [(i, pos) for i, (lay, pos) in enumerate(self.plan.patch) if lay == layer]

        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            x = _main(output)
            if self._row is None and not self._first(("patch", layer), x):
                return None  # a generated step: the prompt's states reach it through the cache
            assert self.plan.states is not None
            new = x.clone()
            pads = [0] if self._row is not None else self.pads
            for row, pad in enumerate(pads):
                for i, pos in mine:
                    new[row, pad + pos] = self.plan.states[i].to(new.dtype)
            return _with_main(output, new)

        return hook


def row_mask(attention_mask: torch.Tensor, expand: int) -> torch.Tensor:
    """``[prompts, p_max]`` -> ``[prompts * expand, p_max]``: each prompt's mask repeated for its beams or
    returned sequences, prompt-major (as ``generate`` expands its inputs)."""
    return attention_mask.repeat_interleave(expand, dim=0) if expand > 1 else attention_mask


def intervening(intervener: Intervener | None) -> contextlib.AbstractContextManager[None]:
    """``intervener.attached()``, or nothing to do."""
    return intervener.attached() if intervener is not None else contextlib.nullcontext()
