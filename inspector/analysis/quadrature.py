"""Quadrature of integrated gradients: fixed rules over ``[0, 1]`` and the adaptive composite rule.

Integrated gradients integrate a vector-valued integrand ``g(a)`` (one entry per input position: the gradient
at ``b + a (x - b)`` times ``x - b``) whose entries sum to ``df/da``, where ``f(a)`` is the attributed
log-probability along the path. So the exact integral of the sum over any panel ``[a, c]`` is known from two
forward passes, ``f(c) - f(a)``, and the quadrature error of each panel can be measured rather than guessed.

* :func:`quadrature`: the fixed rules (:data:`FIXED_RULES`), Captum's names and nodes.
* :func:`adaptive_integrals`: ``"adaptive"``: panels of two Gauss-Legendre nodes, ``ceil(steps / 2)`` equal
  panels to start; while a group's completeness error ``|sum of estimates - (f(1) - f(0))|`` exceeds
  ``tolerance * |f(1) - f(0)|``, its panel with the largest measured error is halved (one a round; the groups
  of a round share their passes), until it does not or the next halving would pass ``max_nodes`` gradient
  evaluations. A trained model's log-probability can swing
  back and forth along the straight path (SmolLM2: a total variation 2 to 30 times ``|f(1) - f(0)|``), which no
  fixed rule of a few dozen nodes integrates; halving where the measured error is puts the nodes there.

No model here: the integrand and ``f`` come in as functions of ``(group, alpha)`` rows, so the rule is tested
on functions with a known integral.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from inspector.analysis.choices import IG_RULES

#: The rules with a fixed set of nodes (:func:`quadrature`); the other rule of :data:`IG_RULES` is adaptive.
FIXED_RULES: tuple[str, ...] = tuple(r for r in IG_RULES if r != "adaptive")
#: Gauss-Legendre nodes per panel of the adaptive rule.
PANEL_NODES = 2

#: ``rows -> values``: one float per ``(group, alpha)`` row.
ValueFn = Callable[[list[tuple[int, float]]], list[float]]
#: ``rows -> integrands``: one ``[n_group]`` float32 tensor per ``(group, alpha)`` row.
IntegrandFn = Callable[[list[tuple[int, float]]], list[torch.Tensor]]


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
    raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(IG_RULES)}")


def check_rule(rule: str, steps: int, tolerance: float, max_steps: int) -> None:
    """Refuse an unknown rule, too few ``steps`` for it, and (``"adaptive"``) a ``tolerance`` that is not a
    number ``> 0`` or a ``max_steps`` below the first nodes; ``ValueError`` saying what to change."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if rule != "adaptive":
        quadrature(rule, steps)
        return
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance < math.inf:
        raise ValueError(f"tolerance must be a number > 0 (0.05: complete within 5%), got {tolerance!r}")
    first = initial_nodes(steps)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < first:
        raise ValueError(f"max_steps must be an integer >= the first nodes ({first} for steps={steps}), "
                         f"got {max_steps!r}")


def initial_nodes(steps: int) -> int:
    """Gradient evaluations of the adaptive rule's first panels for ``steps``: ``steps`` rounded up to even."""
    return PANEL_NODES * max(1, math.ceil(steps / PANEL_NODES))


@dataclass(eq=False)  # compared by identity: a panel is removed from its list when halved
class _Panel:
    """One panel ``[start, end]`` of one group: its estimate ``[n]`` and measured error (estimate sum minus
    ``f(end) - f(start)``)."""

    start: float
    end: float
    estimate: torch.Tensor
    error: float


@dataclass(frozen=True)
class AdaptiveResult:
    """What :func:`adaptive_integrals` returns, per group.

    Attributes:
        integrals: one ``[n_group]`` float32 tensor per group: the integral of each integrand entry over [0, 1].
        nodes: gradient (integrand) evaluations spent on each group.
        errors: each group's ``|sum(integral) - (f(1) - f(0))| / |f(1) - f(0)|`` (``inf`` where ``f(1) == f(0)``
            and the sum is not exactly 0).
    """

    integrals: list[torch.Tensor]
    nodes: list[int]
    errors: list[float]


def adaptive_integrals(
    integrand: IntegrandFn,
    value: ValueFn,
    f0: list[float],
    f1: list[float],
    steps: int,
    tolerance: float,
    max_nodes: int,
) -> AdaptiveResult:
    """Integrate each group's integrand over ``[0, 1]`` until its entries sum to ``f1 - f0`` within ``tolerance``.

    Args:
        integrand: ``(group, alpha)`` rows -> the integrand at each (a tensor per row; its entries sum to
            ``df/da``). Called with the rows of one round at once, sorted by group.
        value: ``(group, alpha)`` rows -> ``f`` at each (the panel ends).
        f0, f1: ``f(0)`` and ``f(1)`` of each group (one entry per group).
        steps: the first panels' nodes (:func:`initial_nodes`).
        tolerance: relative completeness error at which a group stops (``> 0``).
        max_nodes: integrand evaluations per group at most (``>= initial_nodes(steps)``).
    """
    groups = len(f0)
    gl_x, gl_w = np.polynomial.legendre.leggauss(PANEL_NODES)
    ends = [float(a) for a in np.linspace(0.0, 1.0, initial_nodes(steps) // PANEL_NODES + 1)]
    f = [{0.0: f0[g], 1.0: f1[g]} for g in range(groups)]
    inner = [(g, a) for g in range(groups) for a in ends[1:-1]]
    for (g, a), v in zip(inner, value(inner) if inner else [], strict=True):
        f[g][a] = v

    def panels_of(spans: list[tuple[int, float, float]]) -> list[tuple[int, _Panel]]:
        """The panels ``[(group, panel)]`` over ``(group, start, end)`` spans, their nodes in one call."""
        rows = [(g, s + (e - s) * float(x + 1) / 2) for g, s, e in spans for x in gl_x]
        values = integrand(rows) if rows else []
        out = []
        for k, (g, s, e) in enumerate(spans):
            at = values[k * PANEL_NODES : (k + 1) * PANEL_NODES]
            estimate = sum((float(w) * (e - s) / 2 * v.float() for w, v in zip(gl_w, at, strict=True)),
                           torch.zeros_like(at[0], dtype=torch.float32))
            out.append((g, _Panel(s, e, estimate, float(estimate.sum()) - (f[g][e] - f[g][s]))))
        return out

    panels: list[list[_Panel]] = [[] for _ in range(groups)]
    for g, p in panels_of([(g, s, e) for g in range(groups) for s, e in zip(ends[:-1], ends[1:], strict=True)]):
        panels[g].append(p)
    nodes = [initial_nodes(steps)] * groups
    delta = [f1[g] - f0[g] for g in range(groups)]
    while True:
        halve: list[tuple[int, _Panel]] = []
        for g in range(groups):
            if _done(panels[g], delta[g], tolerance):
                continue
            if nodes[g] + 2 * PANEL_NODES <= max_nodes:
                halve.append((g, max(panels[g], key=lambda p: abs(p.error))))
                nodes[g] += 2 * PANEL_NODES
        if not halve:
            break
        mids = [(g, (p.start + p.end) / 2) for g, p in halve]
        for (g, a), v in zip(mids, value(mids), strict=True):
            f[g][a] = v
        for g, p in halve:
            panels[g].remove(p)
        spans = sorted((g, s, e) for (g, p), (_, m) in zip(halve, mids, strict=True)
                       for s, e in ((p.start, m), (m, p.end)))
        for g, p in panels_of(spans):
            panels[g].append(p)
    integrals = [sum((p.estimate for p in ps), torch.zeros_like(ps[0].estimate)) for ps in panels]
    errors = [_relative(sum(p.error for p in ps), delta[g]) for g, ps in enumerate(panels)]
    return AdaptiveResult(integrals=integrals, nodes=nodes, errors=errors)


def _relative(error: float, delta: float) -> float:
    if delta == 0.0:
        return 0.0 if error == 0.0 else math.inf
    return abs(error) / abs(delta)


def _done(panels: list[_Panel], delta: float, tolerance: float) -> bool:
    return _relative(sum(p.error for p in panels), delta) <= tolerance
