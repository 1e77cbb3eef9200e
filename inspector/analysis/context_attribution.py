"""Context attribution: how much each earlier token moved the log-probability of each generated token.

The attributed quantity of generated step ``i`` is its **target**, the log-probability (natural log,
float32, under the raw model logits, as ``Capture.raw.chosen_logprob``) of the generated token
``token_ids[prompt_len + i]`` given the tokens before it. The inputs are the token embeddings
``model.get_input_embeddings()(token_ids)`` ``[seq, d_model]``, fed through ``inputs_embeds``, so
position embeddings (learned, rotary, ALiBi) are added by the model as usual and are not attributed.
A token's score is the attribution of its embedding summed over the embedding dimension (``d_model``).

Methods (:data:`METHODS`):

* ``"input_x_gradient"``: ``x . d target / d x`` at the real embeddings (one gradient per step);
* ``"integrated_gradients"`` (Sundararajan et al. 2017): ``(x - b) . integral_0^1 d target / d x
  (b + a (x - b)) da`` with the integral approximated by a quadrature rule of ``steps`` nodes
  (:data:`RULES`; Gauss-Legendre by default, as Captum). Complete up to that approximation: over
  positions the scores sum to ``target - baseline_target`` (``completeness_error`` says how closely);
* ``"occlusion"``: ``target - target with that one token's embedding replaced by the baseline``.

The **baseline** ``b`` (:data:`BASELINES`) is the zero embedding at every position by default (the
position information stays), or ``"pad"`` / ``"unk"``: the pad / unknown token's embedding at every position
(inseq's integrated gradients start from the unknown token). Occlusion
replaces a token by the same baseline. Where no position embedding is added to the token embeddings
and the first layer normalises its input (Llama, Qwen2, Mistral, Gemma, Falcon, Bloom: RMSNorm or
LayerNorm of the embedding alone), the zero embedding is a singular point: the normalised input jumps
from zero to ``x / |x|`` within ``a < 1e-4`` or so, which no quadrature of a few dozen nodes resolves, so
``completeness_error`` is large there (it is below 1e-5 for GPT-2, whose position embeddings keep the
path away from zero). A non-zero baseline (``"pad"``, ``"unk"``) avoids the jump, but a trained model can
still need more than 32 nodes (SmolLM2, ``"unk"``: errors above 100% where ``target - baseline_target`` is
small; inseq's scores are the same): read ``completeness_error`` before reading the scores as a decomposition.

Scores of positions that are not inputs of a step (``position >= prompt_len + step``: the step's own
token and later ones) are NaN. Gradients are taken for many rows at once: rows of ``(step, alpha)``
with the same input length share one forward and one backward pass (rows do not interact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from inspector.analysis.choices import BASELINES, CONTEXT_METHODS, IG_RULES

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture

#: Attribution methods, integrated gradients' quadrature rules (Captum's names), what replaces a token.
METHODS, RULES = CONTEXT_METHODS, IG_RULES
#: Logit elements (rows x kept positions x vocab) one forward pass may produce; bounds the chunk size.
_LOGIT_BUDGET = 1 << 24


@dataclass(frozen=True)
class ContextAttribution:
    """Attributions of every generated token of one capture to the tokens before it.

    Attributes:
        scores: ``[step, position]`` float32, in change of log-probability (nats): how much the token at
            ``position`` (of the full unpadded sequence, prompt then generated) moved step ``step``'s target.
            NaN where ``position >= prompt_len + step`` (not an input of that step).
        target: ``[step]`` float32, log-probability of each generated token (raw logits).
        baseline_target: ``[step]`` float32, the target with every input at the baseline (integrated
            gradients only, else ``None``).
        completeness_error: ``[step]`` float32, ``|sum(scores) - (target - baseline_target)| /
            |target - baseline_target|`` (integrated gradients only, else ``None``).
        method: one of :data:`METHODS`.
        steps: quadrature nodes of integrated gradients (1 for the other methods).
        rule: the quadrature rule (integrated gradients), else ``""``.
        baseline: one of :data:`BASELINES` (used by integrated gradients and occlusion).
        token_ids: ``[seq]`` int64, the capture's sequence.
        tokens: ``seq`` display strings.
        prompt_len: number of prompt tokens; step ``i`` is position ``prompt_len + i``.
    """

    scores: torch.Tensor
    target: torch.Tensor
    baseline_target: torch.Tensor | None
    completeness_error: torch.Tensor | None
    method: str
    steps: int
    rule: str
    baseline: str
    token_ids: torch.Tensor
    tokens: tuple[str, ...]
    prompt_len: int

    def __post_init__(self) -> None:
        seq = int(self.token_ids.shape[0])
        n = seq - self.prompt_len
        if tuple(self.scores.shape) != (n, seq):
            raise ValueError(f"scores must be [step={n}, position={seq}], got {tuple(self.scores.shape)}")
        for name in ("target", "baseline_target", "completeness_error"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (n,):
                raise ValueError(f"{name} must be [step]=({n},), got {tuple(t.shape)}")
        if len(self.tokens) != seq:
            raise ValueError(f"tokens has {len(self.tokens)} entries, token_ids has {seq}")

    @property
    def num_steps(self) -> int:
        return int(self.scores.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.scores.shape[1])

    def step_scores(self, step: int) -> torch.Tensor:
        """``[prompt_len + step]`` the scores of one step's inputs (no NaN)."""
        if not 0 <= step < self.num_steps:
            raise ValueError(f"step must be within 0..{self.num_steps - 1}, got {step}")
        return self.scores[step, : self.prompt_len + step]

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values: tensors as (nested) lists, NaN as ``None``."""
        def plain(t: torch.Tensor | None) -> Any:
            return None if t is None else [_number(v) for v in t.tolist()] if t.dim() == 1 else [
                [_number(v) for v in row] for row in t.tolist()]

        return {"method": self.method, "steps": self.steps, "rule": self.rule, "baseline": self.baseline,
                "prompt_len": self.prompt_len, "token_ids": self.token_ids.tolist(), "tokens": list(self.tokens),
                "target": plain(self.target), "baseline_target": plain(self.baseline_target),
                "completeness_error": plain(self.completeness_error), "scores": plain(self.scores)}

    @property
    def totals(self) -> torch.Tensor:
        """``[step]`` the sum of each step's scores over its inputs."""
        return torch.nansum(self.scores, dim=1)


def _number(v: float) -> float | None:
    return None if v != v else float(v)  # NaN is the only value not equal to itself


def quadrature(rule: str, steps: int) -> tuple[list[float], list[float]]:
    """``(alphas, weights)`` of ``steps`` nodes approximating an integral over ``[0, 1]`` (Captum's rules)."""
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return [float(a) for a in 0.5 * (x + 1)], [float(v) for v in 0.5 * w]
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("the riemann_trapezoid rule needs steps >= 2")
        weights = [1.0 / (steps - 1)] * steps
        weights[0] = weights[-1] = 0.5 / (steps - 1)
        return [float(a) for a in np.linspace(0.0, 1.0, steps)], weights
    raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")


def _hf_model(model: Any) -> nn.Module:
    inner = getattr(model, "model", None)
    if isinstance(model, nn.Module) or not isinstance(inner, nn.Module):
        raise ValueError("model must be what inspector.load_model returns (an InspectorModel), "
                         f"got {type(model).__name__}")
    return inner


def _embedding(hf: nn.Module) -> nn.Embedding:
    """The model's input embedding (``get_input_embeddings()``), weight ``[vocab, d_model]``."""
    embed = cast("Callable[[], nn.Module]", hf.get_input_embeddings)()
    if not isinstance(embed, nn.Embedding):
        raise ValueError(f"{type(hf).__name__}'s input embedding is a {type(embed).__name__}, not an nn.Embedding")
    return embed


def _check(capture: Capture, model: Any, method: str, steps: int, rule: str, baseline: str, batch_size: int,
           check_model: bool) -> nn.Module:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    if method == "integrated_gradients":
        quadrature(rule, steps)  # unknown rule, or too few steps for it
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    hf = _hf_model(model)
    if capture.num_steps < 1:
        raise ValueError("the capture generated no token: there is nothing to attribute")
    if check_model:
        name, captured = str(getattr(model, "name", "")), capture.meta.model
        if name and captured and name != captured:
            raise ValueError(f"the capture was made with {captured!r}, not {name!r}: load that model, or pass "
                             "check_model=False for the same weights loaded from elsewhere")
        if bool(getattr(model, "random_weights", False)) != capture.meta.random_weights:
            raise ValueError(f"the capture was made with random_weights={capture.meta.random_weights}, the model "
                             f"has random_weights={getattr(model, 'random_weights', False)}")
    vocab = int(_embedding(hf).weight.shape[0])
    if int(capture.token_ids.max()) >= vocab or int(capture.token_ids.min()) < 0:
        raise ValueError(f"the capture's token ids do not fit the model's vocabulary of {vocab}: "
                         "it comes from another model")
    if baseline != "zero" and getattr(getattr(model, "tokenizer", None), f"{baseline}_token_id", None) is None:
        raise ValueError(f"baseline={baseline!r} needs a tokenizer with a {baseline} token")
    return hf


def context_attribution(
    capture: Capture,
    model: Any,
    method: str = "integrated_gradients",
    steps: int = 32,
    rule: str = "gausslegendre",
    baseline: str = "zero",
    batch_size: int = 32,
    check_model: bool = True,
) -> ContextAttribution:
    """Attribute each generated token's log-probability to the tokens before it.

    Args:
        capture: one generated sequence (a beam or a sampled sequence alike: its final tokens are scored).
        model: what :func:`inspector.load_model` returns (``.model``, ``.tokenizer``), the capture's model.
        method: one of :data:`METHODS` (see the module docstring).
        steps: quadrature nodes of integrated gradients (``>= 1``; ignored by the other methods).
        rule: quadrature rule of integrated gradients, one of :data:`RULES`.
        baseline: what a missing token is, one of :data:`BASELINES` (integrated gradients and occlusion).
        batch_size: rows (``(step, alpha)`` pairs, or occluded positions) per forward and backward pass; fewer
            when the logits of a pass would pass 2**24 elements. The activations kept for the backward pass
            grow with it (GPT-2 small: about 25 MB per row of 25 tokens).
        check_model: refuse a capture whose recorded model name or random-weights flag differ from the model's.

    Returns:
        a :class:`ContextAttribution` (``scores [step, position]``).

    Raises:
        ValueError: unknown method, rule or baseline, ``steps < 1``, an empty capture, or a capture of
            another model; raised before any model work.
    """
    hf = _check(capture, model, method, steps, rule, baseline, batch_size, check_model)
    device = next(hf.parameters()).device
    ids = capture.token_ids.to(device)
    prompt_len = capture.prompt_len
    with torch.inference_mode():
        x = _embedding(hf)(ids[None])[0]  # [seq, d]
        if baseline != "zero":
            pad = torch.tensor([int(getattr(model.tokenizer, f"{baseline}_token_id"))], device=device)
            base = _embedding(hf)(pad).expand_as(x)
        else:
            base = torch.zeros_like(x)
        x, base = x.clone(), base.clone()  # usable outside inference mode
        target = _targets(hf, x[None], ids, prompt_len)[0]
        baseline_target = None
    vocab = int(_embedding(hf).weight.shape[0])
    if method == "occlusion":
        scores = _occlusion(hf, x, base, ids, prompt_len, target, batch_size, vocab)
        steps_used = 1
    else:
        if method == "integrated_gradients":
            alphas, weights = quadrature(rule, steps)
            with torch.inference_mode():
                baseline_target = _targets(hf, base[None], ids, prompt_len)[0]
        else:
            alphas, weights = [1.0], [1.0]
        scores = _gradients(hf, x, base, ids, prompt_len, alphas, weights, method, batch_size, vocab)
        steps_used = len(alphas) if method == "integrated_gradients" else 1
    completeness = None
    if baseline_target is not None:
        delta = target - baseline_target
        completeness = ((torch.nansum(scores, dim=1) - delta).abs() / delta.abs()).float()
    return ContextAttribution(
        scores=scores,
        target=target.float().cpu().clone(),
        baseline_target=None if baseline_target is None else baseline_target.float().cpu().clone(),
        completeness_error=completeness,
        method=method,
        steps=steps_used,
        rule=rule if method == "integrated_gradients" else "",
        baseline=baseline,
        token_ids=capture.token_ids.clone(),
        tokens=tuple(capture.tokens),
        prompt_len=prompt_len,
    )


def _targets(hf: nn.Module, embeds: torch.Tensor, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """``[rows, step]`` float32 log-probabilities of the generated tokens for ``[rows, seq, d]`` embeddings."""
    keep = torch.arange(prompt_len - 1, ids.shape[0] - 1, device=ids.device)
    logits = hf(inputs_embeds=embeds[:, : ids.shape[0] - 1], use_cache=False, logits_to_keep=keep).logits
    logp = torch.log_softmax(logits.float(), dim=-1)  # [rows, step, vocab]
    wanted = ids[prompt_len:].expand(logp.shape[0], -1)
    return logp.gather(-1, wanted.unsqueeze(-1)).squeeze(-1)


def _occlusion(hf: nn.Module, x: torch.Tensor, base: torch.Tensor, ids: torch.Tensor, prompt_len: int,
               target: torch.Tensor, batch_size: int, vocab: int) -> torch.Tensor:
    """``[step, seq]`` target minus the target with one position at the baseline; one row per position.

    Occluding position ``j`` changes every step after it, so one pass per position serves all steps.
    """
    seq, n = int(ids.shape[0]), int(ids.shape[0]) - prompt_len
    scores = torch.full((n, seq), float("nan"))
    positions = list(range(seq - 1))  # the last token is no step's input
    chunk = max(1, min(batch_size, _LOGIT_BUDGET // max(1, n * vocab)))
    with torch.inference_mode():
        for start in range(0, len(positions), chunk):
            js = torch.tensor(positions[start : start + chunk], device=x.device)
            embeds = x.expand(len(js), -1, -1).clone()
            rows = torch.arange(len(js), device=x.device)
            embeds[rows, js] = base[js]
            dropped = target[None] - _targets(hf, embeds, ids, prompt_len)  # [rows, step]
            scores[:, js.cpu()] = dropped.T.float().cpu()
    steps = torch.arange(n)[:, None]
    scores[torch.arange(seq)[None, :] >= prompt_len + steps] = float("nan")
    return scores


def _gradients(hf: nn.Module, x: torch.Tensor, base: torch.Tensor, ids: torch.Tensor, prompt_len: int,
               alphas: list[float], weights: list[float], method: str, batch_size: int, vocab: int) -> torch.Tensor:
    """``[step, seq]`` input x gradient or integrated gradients, rows ``(step, alpha)`` batched.

    A chunk holds rows of consecutive steps and is cut to the longest input among them (later positions
    cannot reach an earlier step's target); each row's logits are kept only at its own target position.
    """
    seq, n = int(ids.shape[0]), int(ids.shape[0]) - prompt_len
    rows = [(i, a, w) for i in range(n) for a, w in zip(alphas, weights, strict=True)]
    diff = x if method == "input_x_gradient" else x - base  # [seq, d]
    scores = torch.zeros(n, seq, dtype=torch.float32, device=x.device)
    chunk = max(1, min(batch_size, _LOGIT_BUDGET // vocab))
    with torch.inference_mode(False), torch.enable_grad():
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            step_ids = torch.tensor([r[0] for r in part], device=x.device)
            length = prompt_len + int(step_ids.max())  # inputs 0 .. length - 1
            alpha = torch.tensor([r[1] for r in part], device=x.device, dtype=x.dtype)[:, None, None]
            embeds = (base[:length] + alpha * (x[:length] - base[:length])).detach().requires_grad_(True)
            keep = (prompt_len - 1 + step_ids)[:, None]  # [rows, 1]: each row's own target position
            own = hf(inputs_embeds=embeds, use_cache=False, logits_to_keep=keep).logits[:, 0].float()  # [rows, vocab]
            logp = torch.log_softmax(own, dim=-1).gather(-1, ids[prompt_len + step_ids][:, None]).sum()
            (grad,) = torch.autograd.grad(logp, embeds)
            weight = torch.tensor([r[2] for r in part], device=x.device, dtype=torch.float32)
            per_token = (grad.float() * diff[:length].float()).sum(-1) * weight[:, None]  # [rows, length]
            scores[:, :length].index_add_(0, step_ids, per_token.detach())
    steps = torch.arange(n, device=x.device)[:, None]
    scores[torch.arange(seq, device=x.device)[None, :] >= prompt_len + steps] = float("nan")
    return scores.cpu()
