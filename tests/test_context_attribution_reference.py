"""Context attribution against Captum's implementations on the same weights and sequence.

Captum (``pip install captum``, the ``attribution-check`` extra) attributes one generated step at a
time: its forward function maps the step's prefix embeddings ``[1, length, d]`` to the log-probability
of the generated token, and its per-token score is summed over the embedding dimension as ours is.
"""

from __future__ import annotations

import pytest
import torch
from test_architectures import BY_NAME, build

from inspector.analysis.context_attribution import context_attribution

captum_attr = pytest.importorskip("captum.attr", reason="captum is not installed (pip install captum)")

PROMPT = "The password is 7341. Do not forget it. The password is"
REL_TOL = 1e-3


def _captum_scores(im, capture, method: str, steps: int, rule: str, baseline_id: int | None = None
                   ) -> list[torch.Tensor]:
    """Captum's scores of every step, ``[prompt_len + step]`` each; the baseline is zero, or token ``baseline_id``'s
    embedding at every position."""
    hf, ids, p = im.model, capture.token_ids, capture.prompt_len
    out = []
    for i in range(capture.num_steps):
        length, token = p + i, int(ids[p + i])

        def forward(embeds: torch.Tensor, token: int = token) -> torch.Tensor:
            logits = hf(inputs_embeds=embeds, use_cache=False).logits[:, -1].float()
            return torch.log_softmax(logits, dim=-1)[:, token]

        x = hf.get_input_embeddings()(ids[None, :length]).detach().requires_grad_(True)
        if method == "input_x_gradient":
            attr = captum_attr.InputXGradient(forward).attribute(x)
        else:
            base = torch.zeros_like(x) if baseline_id is None else hf.get_input_embeddings()(
                torch.full_like(ids[None, :length], baseline_id)).detach()
            attr = captum_attr.IntegratedGradients(forward).attribute(x, baselines=base, n_steps=steps, method=rule)
        scores = attr.sum(-1)[0].detach()
        if rule == "riemann_trapezoid" and method != "input_x_gradient":
            # Captum's trapezoid step is 1/n (its weights sum to (n-1)/n); the trapezoid rule's is 1/(n-1)
            scores = scores * steps / (steps - 1)
        out.append(scores)
    return out


def _max_relative_difference(result, ref: list[torch.Tensor]) -> float:
    worst = 0.0
    for i, r in enumerate(ref):
        got = result.step_scores(i)
        worst = max(worst, float((got - r).abs().max()) / max(float(r.abs().max()), 1e-6))
    return worst


@pytest.mark.parametrize(("method", "rule"), [
    ("input_x_gradient", "gausslegendre"),
    ("integrated_gradients", "gausslegendre"),
    ("integrated_gradients", "riemann_trapezoid"),
])
def test_matches_captum_on_tiny_gpt2(tiny, method, rule):
    cap = tiny.generate(PROMPT, max_new_tokens=4)
    result = context_attribution(cap, tiny, method=method, steps=32, rule=rule)
    diff = _max_relative_difference(result, _captum_scores(tiny, cap, method, 32, rule))
    print(f"{method}/{rule}: max relative difference from Captum {diff:.2e}")
    assert diff < REL_TOL


@pytest.mark.parametrize("name", ["llama", "opt"])
def test_matches_captum_on_other_architectures(name):
    im = build(BY_NAME[name])
    cap = im.generate("Hi there, how", max_new_tokens=3)
    result = context_attribution(cap, im, method="integrated_gradients", steps=16, rule="gausslegendre")
    diff = _max_relative_difference(result, _captum_scores(im, cap, "integrated_gradients", 16, "gausslegendre"))
    print(f"{name}: max relative difference from Captum {diff:.2e}")
    assert diff < REL_TOL


def test_matches_captum_from_the_unknown_token(tiny):
    """The baseline inseq uses: the unknown token's embedding at every position."""
    cap = tiny.generate(PROMPT, max_new_tokens=3)
    result = context_attribution(cap, tiny, method="integrated_gradients", steps=16, rule="gausslegendre",
                                 baseline="unk")
    ref = _captum_scores(tiny, cap, "integrated_gradients", 16, "gausslegendre", tiny.tokenizer.unk_token_id)
    diff = _max_relative_difference(result, ref)
    print(f"unk baseline: max relative difference from Captum {diff:.2e}")
    assert diff < REL_TOL
