"""Context attribution against hand-written references: autograd per step, explicit occluded passes, completeness.

The references run the Hugging Face model directly, one generated step at a time, on the step's own
prefix (no batching, no chunks, no ``logits_to_keep``), so they share nothing with the batched code
but the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_architectures import ARCHS, BY_NAME, build

from inspector.analysis.choices import IG_MAX_STEPS, IG_RULE, IG_STEPS, IG_TOLERANCE
from inspector.analysis.context_attribution import METHODS, ContextAttribution, context_attribution, quadrature

PROMPT = "The password is 7341. Do not forget it. The password is"
TOL = 1e-4


def _log_prob(hf, embeds: torch.Tensor, token: int) -> torch.Tensor:
    """Log-probability of ``token`` after ``embeds`` ``[1, length, d]``, from the full logits."""
    logits = hf(inputs_embeds=embeds, use_cache=False).logits[0, -1].float()
    return torch.log_softmax(logits, dim=-1)[token]


def reference_input_x_gradient(im, ids: torch.Tensor, prompt_len: int) -> list[torch.Tensor]:
    """Per step ``[prompt_len + step]``: x . d log p / d x, one backward pass per step on its own prefix."""
    hf = im.model
    out = []
    for i in range(ids.shape[0] - prompt_len):
        length = prompt_len + i
        x = hf.get_input_embeddings()(ids[None, :length]).detach().requires_grad_(True)
        lp = _log_prob(hf, x, int(ids[length]))
        lp.backward()
        assert x.grad is not None
        out.append((x * x.grad).sum(-1)[0].detach())
    return out


def reference_occlusion(im, ids: torch.Tensor, prompt_len: int) -> list[torch.Tensor]:
    """Per step ``[prompt_len + step]``: log p minus log p with one input's embedding set to zero."""
    hf = im.model
    out = []
    with torch.no_grad():
        for i in range(ids.shape[0] - prompt_len):
            length = prompt_len + i
            x = hf.get_input_embeddings()(ids[None, :length])
            full = _log_prob(hf, x, int(ids[length]))
            drops = []
            for j in range(length):
                y = x.clone()
                y[0, j] = 0.0
                drops.append(full - _log_prob(hf, y, int(ids[length])))
            out.append(torch.stack(drops))
    return out


def _assert_matches(result: ContextAttribution, ref: list[torch.Tensor], tol: float = TOL) -> None:
    assert len(ref) == result.num_steps
    for i, r in enumerate(ref):
        got = result.step_scores(i)
        assert got.shape == r.shape
        scale = max(float(r.abs().max()), 1e-3)
        err = float((got - r).abs().max()) / scale
        assert err < tol, f"step {i}: relative error {err:.2e}"
        # positions that are no input of the step are NaN
        assert torch.isnan(result.scores[i, result.prompt_len + i :]).all()


@pytest.fixture(scope="module")
def cap(tiny):
    return tiny.generate(PROMPT, max_new_tokens=5)


def test_targets_are_the_captured_log_probabilities(tiny, cap):
    result = context_attribution(cap, tiny, method="input_x_gradient")
    assert torch.allclose(result.target, cap.raw.chosen_logprob, atol=1e-4)
    assert result.scores.shape == (cap.num_steps, cap.seq_len) and result.scores.dtype == torch.float32


def test_input_x_gradient_matches_autograd_per_step(tiny, cap):
    ref = reference_input_x_gradient(tiny, cap.token_ids, cap.prompt_len)
    # batch_size=3 puts rows of different steps (different lengths) in one pass
    _assert_matches(context_attribution(cap, tiny, method="input_x_gradient", batch_size=3), ref)
    _assert_matches(context_attribution(cap, tiny, method="input_x_gradient"), ref)


def test_occlusion_matches_explicit_forward_passes(tiny, cap):
    ref = reference_occlusion(tiny, cap.token_ids, cap.prompt_len)
    _assert_matches(context_attribution(cap, tiny, method="occlusion", batch_size=4), ref)


def test_integrated_gradients_is_complete(tiny, cap):
    result = context_attribution(cap, tiny, method="integrated_gradients", steps=32)
    assert result.baseline_target is not None and result.completeness_error is not None
    delta = result.target - result.baseline_target
    per_step = ((result.totals - delta).abs() / delta.abs()).tolist()
    print("per-step completeness error:", [f"{e:.1e}" for e in per_step])
    assert max(per_step) < 0.05
    assert torch.allclose(result.completeness_error, torch.tensor(per_step), atol=1e-6)
    # the baseline target is one pass with every input embedding at zero
    with torch.no_grad():
        hf = tiny.model
        x = hf.get_input_embeddings()(cap.token_ids[None, : cap.prompt_len])
        assert torch.isclose(result.baseline_target[0], _log_prob(hf, torch.zeros_like(x), int(cap.generated_ids[0])),
                             atol=1e-4)


def test_integrated_gradients_with_one_node_is_the_midpoint_gradient(tiny, cap):
    """Gauss-Legendre with one node: (x - 0) . grad at x / 2, by hand."""
    hf, ids, p = tiny.model, cap.token_ids, cap.prompt_len
    result = context_attribution(cap, tiny, method="integrated_gradients", steps=1, rule="gausslegendre")
    x = hf.get_input_embeddings()(ids[None, :p]).detach()
    half = (0.5 * x).requires_grad_(True)
    _log_prob(hf, half, int(ids[p])).backward()
    assert half.grad is not None
    ref = (x * half.grad).sum(-1)[0]
    assert float((result.step_scores(0) - ref).abs().max()) < TOL * float(ref.abs().max())


def reference_integrated_gradients(im, ids: torch.Tensor, prompt_len: int, edges: np.ndarray) -> list[torch.Tensor]:
    """Per step ``[prompt_len + step]``: integrated gradients from the zero embedding by a fixed composite rule,
    four Gauss-Legendre nodes on each panel between consecutive ``edges``; plain autograd on the step's prefix."""
    x4, w4 = np.polynomial.legendre.leggauss(4)
    alphas = np.concatenate([s + (e - s) * (x4 + 1) / 2 for s, e in zip(edges[:-1], edges[1:], strict=True)])
    weights = np.concatenate([w4 * (e - s) / 2 for s, e in zip(edges[:-1], edges[1:], strict=True)])
    a = torch.tensor(alphas, dtype=torch.float32)[:, None, None]
    w = torch.tensor(weights, dtype=torch.float32)[:, None]
    hf, out = im.model, []
    for i in range(ids.shape[0] - prompt_len):
        length = prompt_len + i
        x = hf.get_input_embeddings()(ids[None, :length]).detach()
        path = (a * x).requires_grad_(True)
        logits = hf(inputs_embeds=path, use_cache=False).logits[:, -1].float()
        (grad,) = torch.autograd.grad(torch.log_softmax(logits, dim=-1)[:, int(ids[length])].sum(), path)
        out.append(((grad * x).sum(-1) * w).sum(0).detach())
    return out


def test_adaptive_rule_matches_a_fine_fixed_rule_where_32_nodes_fail():
    """Tiny random Llama from the zero embedding: its target jumps within a < 1e-10 (each RMSNorm divides a
    vanishing input by its epsilon). A composite rule graded down to 1e-15 (2400 nodes a step) is complete
    within 1e-5; the adaptive rule agrees with it entry by entry; Gauss-Legendre at 32 nodes does not."""
    im = build(BY_NAME["llama"])
    cap = im.generate("Hi there, how", max_new_tokens=3)
    ref = reference_integrated_gradients(im, cap.token_ids, cap.prompt_len,
                                         np.concatenate([[0.0], np.geomspace(1e-15, 1.0, 600)]))
    adaptive = context_attribution(cap, im, tolerance=1e-3, max_steps=1024)
    fixed = context_attribution(cap, im, rule="gausslegendre", steps=32)
    assert adaptive.baseline_target is not None and adaptive.nodes is not None
    delta = adaptive.target - adaptive.baseline_target
    for i, r in enumerate(ref):
        scale = float(r.abs().max())
        assert abs(float(r.sum() - delta[i])) <= 1e-5 * abs(float(delta[i]))  # the reference is complete
        assert float((adaptive.step_scores(i) - r).abs().max()) <= 5e-3 * scale
        assert float((fixed.step_scores(i) - r).abs().max()) > 0.2 * scale
    assert adaptive.completeness_error is not None and float(adaptive.completeness_error.max()) <= 1e-3
    assert fixed.completeness_error is not None and float(fixed.completeness_error.max()) > 0.1
    assert adaptive.rule == "adaptive" and adaptive.tolerance == 1e-3 and adaptive.steps == 32
    assert all(32 < n <= 1024 for n in adaptive.nodes.tolist()) and fixed.nodes is not None
    assert fixed.nodes.tolist() == [32] * cap.num_steps and fixed.tolerance is None


@pytest.mark.parametrize("name", [a.name for a in ARCHS])
def test_integrated_gradients_by_default_are_complete_on_every_architecture(name):
    im = build(BY_NAME[name])
    c = im.generate("Hi there, how", max_new_tokens=3)
    result = context_attribution(c, im)
    assert (result.rule, result.steps, result.tolerance) == (IG_RULE, IG_STEPS, IG_TOLERANCE) == ("adaptive", 32, 0.05)
    assert result.completeness_error is not None and result.nodes is not None
    print(f"{name}: completeness error {result.completeness_error.tolist()}, nodes {result.nodes.tolist()}")
    assert float(result.completeness_error.max()) <= IG_TOLERANCE
    assert all(IG_STEPS <= n <= IG_MAX_STEPS for n in result.nodes.tolist())


def test_the_adaptive_record_reads_as_json(tiny, cap):
    result = context_attribution(cap, tiny, steps=8, max_steps=8)
    doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert doc["rule"] == "adaptive" and doc["tolerance"] == 0.05 and doc["nodes"] == [8] * cap.num_steps
    assert context_attribution(cap, tiny, method="occlusion").to_dict()["nodes"] is None


def test_quadrature_rules_integrate_polynomials():
    for rule, steps in (("gausslegendre", 4), ("riemann_trapezoid", 201)):
        alphas, weights = quadrature(rule, steps)
        assert abs(sum(weights) - 1.0) < 1e-9
        assert abs(sum(w * a**3 for a, w in zip(alphas, weights, strict=True)) - 0.25) < 1e-4


def test_batched_beam_and_sampled_captures(tiny):
    batch = tiny.generate([PROMPT, "Hello"], max_new_tokens=3)  # left-padded batch
    beams = tiny.generate([PROMPT], max_new_tokens=3, num_beams=3, num_return_sequences=2)
    sampled = tiny.generate(PROMPT, max_new_tokens=3, do_sample=True, temperature=1.5, top_k=50, seed=1)
    for c in [*batch, *beams, sampled]:
        ref = reference_input_x_gradient(tiny, c.token_ids, c.prompt_len)
        result = context_attribution(c, tiny, method="input_x_gradient", batch_size=2)
        _assert_matches(result, ref)
        assert torch.allclose(result.target, c.raw.chosen_logprob, atol=1e-4)


@pytest.mark.parametrize("name", [a.name for a in ARCHS])
def test_every_architecture_matches_autograd_and_occlusion(name):
    im = build(BY_NAME[name])
    c = im.generate("Hi there, how", max_new_tokens=3)
    result = context_attribution(c, im, method="input_x_gradient", batch_size=2)
    assert torch.allclose(result.target, c.raw.chosen_logprob, atol=1e-4)
    _assert_matches(result, reference_input_x_gradient(im, c.token_ids, c.prompt_len), tol=1e-3)
    _assert_matches(context_attribution(c, im, method="occlusion"), reference_occlusion(im, c.token_ids, c.prompt_len),
                    tol=1e-3)


def test_refusals_come_before_model_work(tiny, cap, byte_tiny, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(tiny.model, "forward", boom)
    with pytest.raises(ValueError, match="unknown method 'lrp'"):
        context_attribution(cap, tiny, method="lrp")
    for steps in (0, -3, 2.5):
        with pytest.raises(ValueError, match="steps must be an integer >= 1"):
            context_attribution(cap, tiny, steps=steps)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown rule"):
        context_attribution(cap, tiny, rule="simpson")
    with pytest.raises(ValueError, match="needs steps >= 2"):
        context_attribution(cap, tiny, rule="riemann_trapezoid", steps=1)
    with pytest.raises(ValueError, match="tolerance must be a number > 0"):
        context_attribution(cap, tiny, tolerance=0.0)
    with pytest.raises(ValueError, match=r"max_steps must be an integer >= the first nodes \(64 for steps=63\)"):
        context_attribution(cap, tiny, steps=63, max_steps=32)
    with pytest.raises(ValueError, match="unknown baseline"):
        context_attribution(cap, tiny, baseline="mask")
    with pytest.raises(ValueError, match="made with 'tiny-gpt2'"):
        context_attribution(cap, byte_tiny)
    with pytest.raises(ValueError, match="do not fit the model's vocabulary"):
        context_attribution(cap, byte_tiny, check_model=False)
    with pytest.raises(ValueError, match="InspectorModel"):
        context_attribution(cap, tiny.model)
    assert set(METHODS) == {"input_x_gradient", "integrated_gradients", "occlusion"}


@pytest.mark.slow
def test_trained_model_attributes_a_copied_digit_to_its_source(smollm2):
    """SmolLM2 copies the password; each method's top input for the first copied digit is reported. Input x
    gradient's top is the digit in the prompt; integrated gradients from the unknown token (inseq's baseline),
    complete within 1%, rank it first or second (a 2400-node fixed rule ranks it first, just ahead of the
    space before it). From the zero embedding the first token takes most of the credit instead."""
    c = smollm2.generate(PROMPT, max_new_tokens=3)
    digit = c.prompt_len + 1  # generated: " ", "7", "3"
    assert c.tokens[digit] == "7" and c.tokens[4] == "7", c.tokens
    tops = {}
    for method in METHODS:
        result = context_attribution(c, smollm2, method=method)
        s = result.step_scores(1)
        tops[method] = (int(s.argmax()), repr(c.tokens[int(s.argmax())]))
    print("top source of the copied '7':", tops)
    # occlusion's top is the space just before the copy (without it the model does not start the number at
    # all), so it is reported, not asserted
    assert tops["input_x_gradient"][0] == 4
    ig = context_attribution(c, smollm2, baseline="unk", tolerance=0.01)
    assert ig.completeness_error is not None and float(ig.completeness_error[1]) <= 0.01
    ranked = torch.argsort(-ig.step_scores(1)).tolist()
    print("integrated gradients from unk, top 3:", [(i, c.tokens[i]) for i in ranked[:3]])
    assert 4 in ranked[:2]


@pytest.mark.slow
def test_trained_model_integrated_gradients_are_complete_by_default(smollm2):
    """SmolLM2's target swings back and forth along the straight path: Gauss-Legendre at 32 nodes misses the
    completeness by far on some token, from the zero and from the unknown token's embedding alike; the default
    adaptive rule is complete within 5% on every token."""
    from inspector.data import chat_text_prompt

    c = smollm2.generate(chat_text_prompt("What is the capital of France?", smollm2.tokenizer).text,
                         max_new_tokens=3)
    for baseline in ("zero", "unk"):
        fixed = context_attribution(c, smollm2, rule="gausslegendre", baseline=baseline)
        result = context_attribution(c, smollm2, baseline=baseline)
        assert fixed.completeness_error is not None and result.completeness_error is not None
        assert result.nodes is not None
        print(f"{baseline}: Gauss-Legendre 32 {fixed.completeness_error.tolist()}; adaptive "
              f"{result.completeness_error.tolist()} with {result.nodes.tolist()} nodes")
        assert float(fixed.completeness_error.max()) > IG_TOLERANCE
        assert float(result.completeness_error.max()) <= IG_TOLERANCE
