"""The adaptive quadrature of integrated gradients on functions whose integrals are known by hand.

Each group's integrand has entries ``g_j(a) = f_j'(a)`` for known functions ``f_j``, and ``f = sum_j f_j``, so
the exact integral of entry ``j`` over ``[0, 1]`` is ``f_j(1) - f_j(0)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from inspector.analysis.quadrature import (
    FIXED_RULES,
    AdaptiveResult,
    adaptive_integrals,
    check_rule,
    initial_nodes,
    quadrature,
)

Fn = Callable[[float], float]


def _steep(k: float, at: float) -> tuple[Fn, Fn]:
    """``f(a) = tanh(k (a - at))`` and its derivative: a swing that a few dozen fixed nodes miss."""
    return (lambda a: math.tanh(k * (a - at)), lambda a: k * (1 - math.tanh(k * (a - at)) ** 2))


def _wave(w: float) -> tuple[Fn, Fn]:
    return (lambda a: math.sin(w * a), lambda a: w * math.cos(w * a))


@dataclass
class Problem:
    """Groups of ``(f, f')`` entries as :func:`adaptive_integrals` takes them, and their exact integrals."""

    integrand: Callable[[list[tuple[int, float]]], list[torch.Tensor]]
    value: Callable[[list[tuple[int, float]]], list[float]]
    f0: list[float]
    f1: list[float]
    exact: list[torch.Tensor]
    calls: list[list[tuple[int, float]]]

    def solve(self, steps: int, tolerance: float, max_nodes: int) -> AdaptiveResult:
        return adaptive_integrals(self.integrand, self.value, self.f0, self.f1, steps=steps, tolerance=tolerance,
                                  max_nodes=max_nodes)


def _problem(groups: list[list[tuple[Fn, Fn]]]) -> Problem:
    calls: list[list[tuple[int, float]]] = []

    def integrand(rows: list[tuple[int, float]]) -> list[torch.Tensor]:
        calls.append(list(rows))
        return [torch.tensor([d(a) for _, d in groups[g]], dtype=torch.float32) for g, a in rows]

    def value(rows: list[tuple[int, float]]) -> list[float]:
        return [sum(f(a) for f, _ in groups[g]) for g, a in rows]

    return Problem(integrand, value, [sum(f(0.0) for f, _ in fs) for fs in groups],
                   [sum(f(1.0) for f, _ in fs) for fs in groups],
                   [torch.tensor([f(1.0) - f(0.0) for f, _ in fs]) for fs in groups], calls)


def test_a_steep_swing_is_integrated_where_the_fixed_rule_fails():
    groups = [[_steep(300.0, 0.3), _wave(5.0)], [_steep(80.0, 0.71), _steep(-40.0, 0.2), _wave(2.0)]]
    problem = _problem(groups)
    f0, f1, exact = problem.f0, problem.f1, problem.exact
    # the fixed rule of 32 nodes, by hand: far from the exact integral of the steep entry
    alphas, weights = quadrature("gausslegendre", 32)
    fixed = sum(w * groups[0][0][1](a) for a, w in zip(alphas, weights, strict=True))
    assert abs(fixed - float(exact[0][0])) > 0.05 * abs(float(exact[0][0]))
    result = problem.solve(steps=32, tolerance=1e-4, max_nodes=2048)
    for g in range(len(groups)):
        delta = f1[g] - f0[g]
        assert result.errors[g] <= 1e-4
        assert abs(float(result.integrals[g].sum()) - delta) <= 1e-4 * abs(delta) + 1e-6
        # every entry, not only their sum, is close to its own exact integral
        assert torch.allclose(result.integrals[g], exact[g].float(), atol=2e-3), (result.integrals[g], exact[g])
        assert 32 < result.nodes[g] <= 2048


def test_a_smooth_integrand_keeps_the_first_nodes():
    groups = [[_wave(1.0), (lambda a: a**3, lambda a: 3 * a**2)]]
    problem = _problem(groups)
    result = problem.solve(steps=32, tolerance=1e-3, max_nodes=512)
    assert result.nodes == [32] and len(problem.calls) == 1 and len(problem.calls[0]) == 32
    assert torch.allclose(result.integrals[0], problem.exact[0].float(), atol=1e-6)


def test_the_budget_is_a_hard_limit_and_the_error_is_reported():
    groups = [[_steep(2000.0, 0.37)]]
    problem = _problem(groups)
    f0, f1 = problem.f0, problem.f1
    result = problem.solve(steps=8, tolerance=1e-9, max_nodes=40)
    assert result.nodes[0] <= 40 and sum(len(c) for c in problem.calls) == result.nodes[0]
    measured = abs(float(result.integrals[0].sum()) - (f1[0] - f0[0])) / abs(f1[0] - f0[0])
    assert result.errors[0] == pytest.approx(measured, rel=1e-4, abs=1e-7)
    assert result.errors[0] > 1e-9


def test_groups_do_not_interact():
    a, b = [_steep(300.0, 0.3)], [_wave(3.0)]
    together = _problem([a, b]).solve(steps=16, tolerance=1e-4, max_nodes=1024)
    for g, group in enumerate((a, b)):
        alone = _problem([group]).solve(steps=16, tolerance=1e-4, max_nodes=1024)
        assert alone.nodes[0] == together.nodes[g]
        assert torch.equal(alone.integrals[0], together.integrals[g])


def test_no_change_along_the_path():
    """``f(1) == f(0)``: complete only if the estimates sum to exactly 0; the error is otherwise infinite."""
    flat: list[tuple[Fn, Fn]] = [(lambda a: 0.0, lambda a: 0.0)]
    result = _problem([flat]).solve(steps=4, tolerance=0.05, max_nodes=16)
    assert result.errors == [0.0] and result.nodes == [4]
    # a^3 (1 - a)^2: back where it started, non-zero in between; two nodes a panel do not integrate its
    # fourth-degree derivative exactly, so the estimate is not exactly 0 and the whole budget is spent
    loop: list[tuple[Fn, Fn]] = [(lambda a: a**3 * (1 - a) ** 2,
                                  lambda a: 3 * a**2 * (1 - a) ** 2 - 2 * a**3 * (1 - a))]
    result = _problem([loop]).solve(steps=4, tolerance=0.05, max_nodes=16)
    assert result.nodes == [16] and result.errors == [math.inf]


def test_first_nodes_and_option_checks():
    assert [initial_nodes(s) for s in (1, 2, 31, 32)] == [2, 2, 32, 32]
    assert set(FIXED_RULES) == {"gausslegendre", "riemann_trapezoid"}
    check_rule("adaptive", 32, 0.05, 32)
    for tolerance in (0, -0.1, math.nan, math.inf, True, "0.05"):
        with pytest.raises(ValueError, match="tolerance must be a number > 0"):
            check_rule("adaptive", 32, tolerance, 512)  # type: ignore[arg-type]
    for max_steps in (30, 31.5, True):
        with pytest.raises(ValueError, match=r"max_steps must be an integer >= the first nodes \(32"):
            check_rule("adaptive", 31, 0.05, max_steps)  # type: ignore[arg-type]
    check_rule("gausslegendre", 3, -1.0, 0)  # a fixed rule ignores the adaptive options
    with pytest.raises(ValueError, match="unknown rule 'simpson'; choose one of adaptive, gausslegendre"):
        check_rule("simpson", 32, 0.05, 512)
