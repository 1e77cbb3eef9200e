"""Direct logit attribution, "why this token": how much each head, MLP and embedding wrote the chosen logit.

The residual stream entering the final norm is a sum of parts: the token embedding, learned positions, each
head's slice of the attention output through its slice of the output projection, each projection's bias,
each MLP's output. With the final norm's scale (``1 / std`` or ``1 / rms``) frozen at its actual value for
the position, as TransformerLens and the LLM Transparency Tool do, the norm is linear, so the logit is a sum
of one term per part plus the norm's offset (``final_norm.bias``) and the output layer's bias
(``unembed.bias``). Gemma 2's post-attention and post-MLP norms have their scales frozen the same way: a head's
term is its output through that layer's post-norm at the norm's actual scale. The parts are *direct* effects:
what a part writes is counted where it is written, not what later layers make of it.

One teacher-forced forward pass with hooks over each capture's final sequence (prompt and generated tokens;
captures of one call are left-padded into one batch) gives everything; beam, sampled and forced captures work
alike, as only the final sequence matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import torch
from torch import nn

from inspector._components import (
    EMBED,
    FINAL_NORM_BIAS,
    POSITION,
    UNEMBED_BIAS,
    attention_bias_name,
    head_name,
    mlp_name,
)
from inspector._lens_math import hf_module
from inspector._model_parts import ModelParts, model_parts, norm_parts, projection_bias, projection_weight
from inspector._records.capture import Capture
from inspector.analysis.choices import ATTRIBUTION_TARGETS

Target = Literal["chosen", "margin"]
#: What :func:`logit_attribution` can explain: the chosen token's logit, or its margin over the runner-up.
TARGETS: tuple[str, ...] = ATTRIBUTION_TARGETS
#: Largest gap (nats) between the chosen token's log-probability in the teacher-forced pass and in the capture
#: before the capture is said to come from another model.
SAME_MODEL_TOL = 0.05


@dataclass(frozen=True)
class LogitAttribution:
    """The direct contribution of each part of the model to one capture's target logit, at every step.

    Attributes:
        parts: ``[step, component]`` float32, in logits; each row sums to ``total`` (within float rounding).
        names: ``component`` names (:mod:`inspector._components`): ``"embed"``, ``"pos"`` (learned
            positions only), per layer its heads ``"L3.H0"``... (query heads), ``"L3.attn.bias"`` (where the
            output projection has a bias) and ``"L3.mlp"``, then ``"final_norm.bias"`` and ``"unembed.bias"``
            where the model has them.
        total: ``[step]`` float32: the chosen token's raw logit (``"chosen"``), or the chosen logit minus the
            runner-up's (``"margin"``). With logit soft-capping (Gemma 2) the logit before the cap.
        token_ids: ``[step]`` int64, the token generated at each step.
        runner_up_ids: ``[step]`` int64, the highest-logit token other than the chosen one.
        chosen_logprob: ``[step]`` float32, the chosen token's log-probability in the teacher-forced pass
            (compare with ``capture.raw.chosen_logprob``).
        target: ``"chosen"`` or ``"margin"``.
    """

    parts: torch.Tensor
    names: list[str]
    total: torch.Tensor
    token_ids: torch.Tensor
    runner_up_ids: torch.Tensor
    chosen_logprob: torch.Tensor
    target: str

    def __post_init__(self) -> None:
        steps = int(self.total.shape[0])
        if tuple(self.parts.shape) != (steps, len(self.names)):
            raise ValueError(f"parts must be [step, component]=({steps}, {len(self.names)}), "
                             f"got {tuple(self.parts.shape)}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")

    @property
    def num_steps(self) -> int:
        return int(self.total.shape[0])

    def top(self, step: int, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` parts of largest absolute contribution at ``step``, largest first: ``[(name, logits)]``."""
        if not 0 <= step < self.num_steps:
            raise ValueError(f"step {step} is out of range: the capture has steps 0-{self.num_steps - 1}")
        row = self.parts[step]
        order = row.abs().argsort(descending=True, stable=True)[:n]
        return [(self.names[int(i)], float(row[i])) for i in order]


def _pad_id(model: Any) -> int:
    pad = getattr(getattr(model, "tokenizer", None), "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _check(captures: Sequence[Capture], module: nn.Module, target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS} (the chosen token's logit, or its margin over the "
                         f"runner-up), got {target!r}")
    if not captures:
        raise ValueError("no captures given: pass a Capture or a non-empty list of them")
    config: Any = getattr(module, "config", None)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    for n, cap in enumerate(captures):
        which = f"capture {n}" if len(captures) > 1 else "the capture"
        if not isinstance(cap, Capture):
            raise ValueError(f"{which} is a {type(cap).__name__}, not an inspector Capture")
        if cap.num_steps == 0:
            raise ValueError(f"{which} generated no tokens: there is no chosen token to attribute")
        if cap.prompt_len == 0:
            raise ValueError(f"{which} has an empty prompt: the first step has no position to read the logit from")
        biggest = max(int(cap.token_ids.max()), int(cap.raw.topk_ids.max()) if cap.raw.topk_ids.numel() else 0)
        width = None if cap.logits is None else int(cap.logits.shape[-1])
        if vocab and (biggest >= vocab or (width is not None and width != vocab)):
            raise ValueError(f"{which} is not from this model: it holds token ids up to {biggest}"
                             f"{'' if width is None else f' and logits over {width} tokens'}, the model's vocabulary"
                             f" has {vocab}; load the model that made it ({cap.meta.model or 'see capture.meta'})")
        if cap.attentions is not None and cap.attention_layout.layers is None and layers and cap.num_layers != layers:
            raise ValueError(f"{which} is not from this model: it has attention for {cap.num_layers} layers, the "
                             f"model has {layers}; load the model that made it ({cap.meta.model or 'see meta'})")


def _names(parts: ModelParts) -> list[str]:
    names = [EMBED] + ([POSITION] if parts.position is not None else [])
    for layer, p in enumerate(parts.layers):
        names += [head_name(layer, h) for h in range(p.num_heads)]
        if projection_bias(p.out_proj) is not None:
            names.append(attention_bias_name(layer))
        names.append(mlp_name(layer))
    if norm_parts(parts.final_norm).bias is not None:
        names.append(FINAL_NORM_BIAS)
    if projection_bias(parts.unembed) is not None:
        names.append(UNEMBED_BIAS)
    return names


class _Recorder:
    """Forward hooks that keep, at the rows and columns of the attributed positions, what attribution reads."""

    def __init__(self, parts: ModelParts, rows: torch.Tensor, cols: torch.Tensor, keep: int, width: int) -> None:
        self.rows, self.cols, self.keep, self.width = rows, cols, keep, width
        self.seen: dict[str, torch.Tensor] = {}
        self.handles: list[Any] = []
        first = parts.layers[0].block
        self.handles.append(first.register_forward_pre_hook(self._input("h0"), with_kwargs=True))
        if parts.position is not None:
            self.handles.append(parts.position.register_forward_hook(self._output("pos")))
        for i, p in enumerate(parts.layers):
            self.handles.append(p.out_proj.register_forward_pre_hook(self._input(f"z{i}"), with_kwargs=True))
            self.handles.append(p.mlp.register_forward_hook(self._output(f"m{i}")))
            for key, norm in ((f"pa{i}", p.attention_post_norm), (f"pm{i}", p.mlp_post_norm)):
                if norm is not None:
                    self.handles.append(norm.register_forward_pre_hook(self._input(key), with_kwargs=True))
        self.handles.append(parts.final_norm.register_forward_pre_hook(self._input("x"), with_kwargs=True))
        self.handles.append(parts.unembed.register_forward_hook(self._output("logits")))

    def _take(self, key: str, value: torch.Tensor) -> None:
        if value.dim() == 2:  # OPT's MLP runs on the positions flattened, [batch * seq, width]
            value = value.reshape(-1, self.width, value.shape[-1])
        rows = self.rows if value.shape[0] > 1 else torch.zeros_like(self.rows)
        # the output layer sees only the last ``keep`` positions; every other tensor the whole row
        cols = self.cols - (self.width - self.keep) if key == "logits" else self.cols
        self.seen[key] = value[rows.to(value.device), cols.to(value.device)].detach().float()

    def _input(self, key: str) -> Any:
        from inspector._compat import attention_input

        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self._take(key, attention_input(args, kwargs))
        return hook

    def _output(self, key: str) -> Any:
        def hook(_m: nn.Module, _args: tuple[Any, ...], out: Any) -> None:
            self._take(key, out[0] if isinstance(out, tuple) else out)
        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _forward(model: Any, module: nn.Module, parts: ModelParts,
             captures: Sequence[Capture]) -> tuple[dict[str, torch.Tensor], list[int]]:
    """One left-padded teacher-forced pass over every capture's final sequence but its last token."""
    seqs = [cap.token_ids[:-1].long() for cap in captures]
    steps = [cap.num_steps for cap in captures]
    width, keep = max(len(s) for s in seqs), max(steps)
    ids = torch.full((len(seqs), width), _pad_id(model), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = seq
        mask[row, width - len(seq):] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    rows = torch.cat([torch.full((s,), r, dtype=torch.long) for r, s in enumerate(steps)])
    cols = torch.cat([torch.arange(width - s, width) for s in steps])
    recorder = _Recorder(parts, rows, cols, keep, width)
    device = next(module.parameters()).device
    try:
        with torch.no_grad():
            module(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
                   use_cache=False, logits_to_keep=keep)
    finally:
        recorder.close()
    return recorder.seen, steps


def _attribute(seen: dict[str, torch.Tensor], parts: ModelParts, chosen: torch.Tensor,
               target: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(parts [N, component], total [N], runner_up [N], chosen_logprob [N])`` over all attributed positions."""
    logits = seen["logits"]
    chosen = chosen.to(logits.device)
    others = logits.scatter(1, chosen[:, None], float("-inf"))
    runner = others.argmax(dim=-1)
    picked = logits.gather(1, chosen[:, None])[:, 0]
    capped = logits if parts.softcap is None else torch.tanh(logits / parts.softcap) * parts.softcap
    logprob = capped.log_softmax(dim=-1).gather(1, chosen[:, None])[:, 0]
    unembed = projection_weight(parts.unembed).detach()  # [vocab, width]: rows picked before any cast
    direction = unembed[chosen].float()
    total = picked
    u_bias = projection_bias(parts.unembed)
    bias_term = None if u_bias is None else u_bias.detach().float()[chosen]
    if target == "margin":
        direction = direction - unembed[runner].float()
        total = picked - logits.gather(1, runner[:, None])[:, 0]
        if u_bias is not None and bias_term is not None:
            bias_term = bias_term - u_bias.detach().float()[runner]
    final = norm_parts(parts.final_norm)
    v = final.pull_back(direction, seen["x"])  # [N, width]: the part's row times this is its term
    columns = []
    embed = seen["h0"] - seen["pos"] if "pos" in seen else seen["h0"]
    columns.append((embed * v).sum(-1, keepdim=True))
    if "pos" in seen:
        columns.append((seen["pos"] * v).sum(-1, keepdim=True))
    for i, p in enumerate(parts.layers):
        va = v if p.attention_post_norm is None else norm_parts(p.attention_post_norm).pull_back(v, seen[f"pa{i}"])
        vm = v if p.mlp_post_norm is None else norm_parts(p.mlp_post_norm).pull_back(v, seen[f"pm{i}"])
        back = va @ projection_weight(p.out_proj).detach().float()  # [N, heads * head_dim]
        columns.append((seen[f"z{i}"] * back).view(len(v), p.num_heads, p.head_dim).sum(-1))
        o_bias = projection_bias(p.out_proj)
        if o_bias is not None:
            columns.append((va @ o_bias.detach().float())[:, None])
        columns.append((seen[f"m{i}"] * vm).sum(-1, keepdim=True))
    if final.bias is not None:
        columns.append((direction * final.bias).sum(-1, keepdim=True))
    if bias_term is not None:
        columns.append(bias_term[:, None])
    return torch.cat(columns, dim=1), total, runner, logprob


@overload
def logit_attribution(capture: Capture, model: Any, target: str = "chosen") -> LogitAttribution: ...
@overload
def logit_attribution(capture: Sequence[Capture], model: Any, target: str = "chosen") -> list[LogitAttribution]: ...
def logit_attribution(capture: Capture | Sequence[Capture], model: Any,
                      target: str = "chosen") -> LogitAttribution | list[LogitAttribution]:
    """The direct logit attribution of every generated step of ``capture`` (one, or a list: one each).

    Args:
        capture: a capture, or a list of captures made by ``model`` (batched into one forward pass).
        model: what :func:`inspector.load_model` returns (or the Hugging Face model itself).
        target: ``"chosen"`` (the chosen token's logit) or ``"margin"`` (its logit minus the runner-up's).

    Raises:
        ValueError: a bad ``target``, a capture with no generated tokens, or one from another model (its token
            ids or layer count do not fit; or, after the forward pass, the chosen tokens' log-probabilities
            differ from the capture's by more than :data:`SAME_MODEL_TOL`).
        UnsupportedModelError: an architecture whose parts are not known.
    """
    single = isinstance(capture, Capture)
    captures: list[Capture] = [capture] if isinstance(capture, Capture) else list(capture)
    module = hf_module(model)
    _check(captures, module, target)
    parts = model_parts(module)
    names = _names(parts)
    seen, steps = _forward(model, module, parts, captures)
    chosen = torch.cat([cap.generated_ids.long() for cap in captures])
    values, total, runner, logprob = _attribute(seen, parts, chosen, target)
    out: list[LogitAttribution] = []
    start = 0
    for n, (cap, s) in enumerate(zip(captures, steps, strict=True)):
        end = start + s
        gap = float((logprob[start:end].cpu() - cap.raw.chosen_logprob.float()).abs().max())
        if gap > SAME_MODEL_TOL:
            raise ValueError(f"capture {n} is not from this model: its chosen tokens' log-probabilities differ from"
                             f" a teacher-forced pass by up to {gap:.3g} nats; load the model that made it "
                             f"({cap.meta.model or 'see capture.meta'})")
        out.append(LogitAttribution(
            parts=values[start:end].cpu(), names=list(names), total=total[start:end].cpu(),
            token_ids=chosen[start:end].cpu(), runner_up_ids=runner[start:end].cpu(),
            chosen_logprob=logprob[start:end].cpu(), target=target))
        start = end
    return out[0] if single else out
