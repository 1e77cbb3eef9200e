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
  (b + a (x - b)) da``, the integral by a quadrature rule (:data:`RULES`). Complete up to the quadrature: over
  positions the scores sum to ``target - baseline_target``; ``completeness_error`` says how closely. The
  default rule, ``"adaptive"`` (:mod:`inspector.analysis.quadrature`), starts from ``steps`` nodes and adds
  nodes where the measured error is until each step is complete within ``tolerance`` (5%) or has spent
  ``max_steps`` gradient evaluations (``nodes`` says how many each step took). The fixed rules
  (``"gausslegendre"``, ``"riemann_trapezoid"``) use ``steps`` nodes, Captum's nodes and weights;
* ``"occlusion"``: ``target - target with that one token's embedding replaced by the baseline``.

The **baseline** ``b`` (:data:`BASELINES`) is the zero embedding at every position by default (the
position information stays), or ``"pad"`` / ``"unk"``: the pad / unknown token's embedding at every position
(inseq's integrated gradients start from the unknown token). Occlusion replaces a token by the same baseline.
Along the path a trained model's target can swing back and forth (SmolLM2: a total variation 2 to 30 times
``|target - baseline_target|``; from the zero embedding, where its output is uniform, down to ``a < 1e-9``), so
a fixed rule of 32 nodes can be off by 100% and more, while the adaptive rule puts its nodes where the swings
are (``docs/performance.md``: errors and costs). For GPT-2 every rule is complete within 1e-4 at 32 nodes.
Completeness checks the sum; single scores settle more slowly (SmolLM2, ``"unk"``: within 35% of a 2400-node
rule's at ``tolerance=0.05``, 9% at 0.002): lower ``tolerance`` before reading single scores of such a model.

Scores of positions that are not inputs of a step (``position >= prompt_len + step``: the step's own
token and later ones) are NaN. Gradients are taken for many rows at once: rows of ``(step, alpha)``
with the same input length share one forward and one backward pass (rows do not interact).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from inspector.analysis.choices import (
    BASELINES,
    CONTEXT_METHODS,
    IG_MAX_STEPS,
    IG_RULE,
    IG_RULES,
    IG_STEPS,
    IG_TOLERANCE,
)
from inspector.analysis.quadrature import adaptive_integrals, check_rule, quadrature

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
        steps: quadrature nodes of integrated gradients, the first ones for ``"adaptive"`` (1 for the other
            methods).
        rule: the quadrature rule (integrated gradients), else ``""``.
        baseline: one of :data:`BASELINES` (used by integrated gradients and occlusion).
        token_ids: ``[seq]`` int64, the capture's sequence.
        tokens: ``seq`` display strings.
        prompt_len: number of prompt tokens; step ``i`` is position ``prompt_len + i``.
        nodes: ``[step]`` int64, the gradient evaluations each step took (integrated gradients only, else
            ``None``): ``steps`` for a fixed rule; for ``"adaptive"`` at least ``steps`` (rounded up to even),
            more where those were not complete within ``tolerance``.
        tolerance: the completeness error at which the adaptive rule stopped adding nodes (``None`` for the
            fixed rules and the other methods).
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
    nodes: torch.Tensor | None = None
    tolerance: float | None = None

    def __post_init__(self) -> None:
        seq = int(self.token_ids.shape[0])
        n = seq - self.prompt_len
        if tuple(self.scores.shape) != (n, seq):
            raise ValueError(f"scores must be [step={n}, position={seq}], got {tuple(self.scores.shape)}")
        for name in ("target", "baseline_target", "completeness_error", "nodes"):
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
        """Every field as JSON-ready values: tensors as (nested) lists, NaN and infinity as ``None``."""
        def plain(t: torch.Tensor | None) -> Any:
            return None if t is None else [_number(v) for v in t.tolist()] if t.dim() == 1 else [
                [_number(v) for v in row] for row in t.tolist()]

        return {"method": self.method, "steps": self.steps, "rule": self.rule, "baseline": self.baseline,
                "tolerance": self.tolerance, "nodes": None if self.nodes is None else self.nodes.tolist(),
                "prompt_len": self.prompt_len, "token_ids": self.token_ids.tolist(), "tokens": list(self.tokens),
                "target": plain(self.target), "baseline_target": plain(self.baseline_target),
                "completeness_error": plain(self.completeness_error), "scores": plain(self.scores)}

    @property
    def totals(self) -> torch.Tensor:
        """``[step]`` the sum of each step's scores over its inputs."""
        return torch.nansum(self.scores, dim=1)


def _number(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None  # JSON has no NaN or infinity


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


def _check(capture: Capture, model: Any, method: str, steps: int, rule: str, baseline: str, tolerance: float,
           max_steps: int, batch_size: int, check_model: bool) -> nn.Module:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    if method == "integrated_gradients":
        check_rule(rule, steps, tolerance, max_steps)
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
    steps: int = IG_STEPS,
    rule: str = IG_RULE,
    baseline: str = "zero",
    tolerance: float = IG_TOLERANCE,
    max_steps: int = IG_MAX_STEPS,
    batch_size: int = 32,
    check_model: bool = True,
) -> ContextAttribution:
    """Attribute each generated token's log-probability to the tokens before it.

    Args:
        capture: one generated sequence (a beam or a sampled sequence alike: its final tokens are scored).
        model: what :func:`inspector.load_model` returns (``.model``, ``.tokenizer``), the capture's model.
        method: one of :data:`METHODS` (see the module docstring).
        steps: quadrature nodes of integrated gradients, the first ones of ``"adaptive"`` (``>= 1``; ignored
            by the other methods).
        rule: quadrature rule of integrated gradients, one of :data:`RULES`.
        baseline: what a missing token is, one of :data:`BASELINES` (integrated gradients and occlusion).
        tolerance: ``"adaptive"``: the completeness error (relative, ``> 0``) at which a step stops getting
            nodes.
        max_steps: ``"adaptive"``: gradient evaluations one generated step may take at most (``>=`` ``steps``
            rounded up to even); a step that reaches it keeps a completeness error above ``tolerance``.
        batch_size: rows (``(step, alpha)`` pairs, or occluded positions) per forward and backward pass; fewer
            when the logits of a pass would pass 2**24 elements. The activations kept for the backward pass
            grow with it (GPT-2 small: about 25 MB per row of 25 tokens).
        check_model: refuse a capture whose recorded model name or random-weights flag differ from the model's.

    Returns:
        a :class:`ContextAttribution` (``scores [step, position]``).

    Raises:
        ValueError: unknown method, rule or baseline, ``steps < 1``, a tolerance or budget out of range, an
            empty capture, or a capture of another model; raised before any model work.
    """
    hf = _check(capture, model, method, steps, rule, baseline, tolerance, max_steps, batch_size, check_model)
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
    chunk = max(1, min(batch_size, _LOGIT_BUDGET // int(_embedding(hf).weight.shape[0])))
    path = _Path(hf, x, base, ids, prompt_len, chunk)
    nodes = None
    if method == "occlusion":
        scores = _occlusion(hf, x, base, ids, prompt_len, target, batch_size, path.vocab)
    elif method == "input_x_gradient":
        scores = path.fixed_rule([1.0], [1.0], x)
    else:
        with torch.inference_mode():
            baseline_target = _targets(hf, base[None], ids, prompt_len)[0]
        if rule == "adaptive":
            scores, nodes = path.adaptive(target, baseline_target, steps, tolerance, max_steps)
        else:
            alphas, weights = quadrature(rule, steps)
            scores = path.fixed_rule(alphas, weights, x - base)
            nodes = torch.full((capture.num_steps,), len(alphas), dtype=torch.int64)
    completeness = None
    if baseline_target is not None:
        delta = target - baseline_target
        completeness = ((torch.nansum(scores, dim=1) - delta.cpu()).abs() / delta.cpu().abs()).float()
    ig = method == "integrated_gradients"
    return ContextAttribution(
        scores=scores,
        target=target.float().cpu().clone(),
        baseline_target=None if baseline_target is None else baseline_target.float().cpu().clone(),
        completeness_error=completeness,
        method=method,
        steps=steps if ig else 1,
        rule=rule if ig else "",
        baseline=baseline,
        token_ids=capture.token_ids.clone(),
        tokens=tuple(capture.tokens),
        prompt_len=prompt_len,
        nodes=nodes,
        tolerance=float(tolerance) if ig and rule == "adaptive" else None,
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


class _Path:
    """Passes along the path ``base + alpha (x - base)`` over ``(step, alpha)`` rows, ``chunk`` rows a pass.

    A chunk holds rows of consecutive steps and is cut to the longest input among them (later positions
    cannot reach an earlier step's target); each row's logits are kept only at its own target position.
    """

    def __init__(self, hf: nn.Module, x: torch.Tensor, base: torch.Tensor, ids: torch.Tensor, prompt_len: int,
                 chunk: int) -> None:
        self.hf, self.x, self.base, self.ids, self.prompt_len, self.chunk = hf, x, base, ids, prompt_len, chunk
        self.vocab = int(_embedding(hf).weight.shape[0])
        self.seq, self.n = int(ids.shape[0]), int(ids.shape[0]) - prompt_len

    def _passes(self, rows: list[tuple[int, float]], diff: torch.Tensor | None
                ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Per chunk: its first row's index, the rows' steps ``[r]`` and, with ``diff`` ``[seq, d]``, the gradient
        of each row's target times ``diff`` summed over ``d`` ``[r, length]``; without, the targets ``[r]``."""
        x, base, ids, p = self.x, self.base, self.ids, self.prompt_len
        for start in range(0, len(rows), self.chunk):
            part = rows[start : start + self.chunk]
            step_ids = torch.tensor([r[0] for r in part], device=x.device)
            length = p + int(step_ids.max())  # inputs 0 .. length - 1
            alpha = torch.tensor([r[1] for r in part], device=x.device, dtype=x.dtype)[:, None, None]
            keep = (p - 1 + step_ids)[:, None]  # [rows, 1]: each row's own target position
            with torch.inference_mode(diff is None), torch.set_grad_enabled(diff is not None):
                embeds = base[:length] + alpha * (x[:length] - base[:length])
                embeds = embeds.detach().requires_grad_(diff is not None)
                own = self.hf(inputs_embeds=embeds, use_cache=False, logits_to_keep=keep).logits[:, 0].float()
                logp = torch.log_softmax(own, dim=-1).gather(-1, ids[p + step_ids][:, None])[:, 0]  # [rows]
                if diff is None:
                    out = logp.detach().clone()
                else:
                    (grad,) = torch.autograd.grad(logp.sum(), embeds)
                    out = (grad.float() * diff[:length].float()).sum(-1).detach()
            yield start, step_ids, out

    def _nan_after(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` ``[step, seq]`` on the CPU, NaN where a position is no input of the step."""
        steps = torch.arange(self.n, device=scores.device)[:, None]
        scores[torch.arange(self.seq, device=scores.device)[None, :] >= self.prompt_len + steps] = float("nan")
        return scores.cpu()

    def fixed_rule(self, alphas: list[float], weights: list[float], diff: torch.Tensor) -> torch.Tensor:
        """``[step, seq]``: ``diff . sum_k weights[k] * gradient at alphas[k]`` for every step (input x gradient:
        one node at 1 times ``x``)."""
        rows = [(i, a) for i in range(self.n) for a in alphas]
        weight = torch.tensor([w for _ in range(self.n) for w in weights], dtype=torch.float32, device=self.x.device)
        scores = torch.zeros(self.n, self.seq, dtype=torch.float32, device=self.x.device)
        for start, step_ids, per_token in self._passes(rows, diff):
            w = weight[start : start + len(step_ids)]
            scores[:, : per_token.shape[1]].index_add_(0, step_ids, per_token * w[:, None])
        return self._nan_after(scores)

    def adaptive(self, target: torch.Tensor, baseline_target: torch.Tensor, steps: int, tolerance: float,
                 max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``([step, seq] scores, [step] nodes)`` of integrated gradients by the adaptive rule."""
        diff = self.x - self.base

        def integrand(rows: list[tuple[int, float]]) -> list[torch.Tensor]:
            out: list[torch.Tensor] = []
            for _, step_ids, per_token in self._passes(rows, diff):
                out += [row[: self.prompt_len + int(i)] for row, i in zip(per_token, step_ids.tolist(), strict=True)]
            return out

        def value(rows: list[tuple[int, float]]) -> list[float]:
            return [float(v) for _, _, logp in self._passes(rows, None) for v in logp.tolist()]

        result = adaptive_integrals(integrand, value, baseline_target.tolist(), target.tolist(), steps, tolerance,
                                    max_steps)
        scores = torch.zeros(self.n, self.seq, dtype=torch.float32, device=self.x.device)
        for i, integral in enumerate(result.integrals):
            scores[i, : integral.shape[0]] = integral
        return self._nan_after(scores), torch.tensor(result.nodes, dtype=torch.int64)
