"""Generation runs under ``torch.inference_mode``; nothing it hands back may be an inference tensor.

An inference tensor refuses in-place updates and autograd outside inference mode, so a capture
holding one would break ordinary user code (``capture.attentions.mul_(2)``, ``requires_grad_()``)
and a kept prompt cache would break the teacher-forced passes that extend it. These tests walk every
tensor reachable from the captures of each kind of generation and use it in place.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from inspector._capture.engine import generate_with_prompt_cache
from inspector._capture.settings import GenerationSettings

PROMPTS = ["ab", "hello there"]


def tensors_in(obj: Any, path: str = "capture", seen: set[int] | None = None) -> list[tuple[str, torch.Tensor]]:
    """Every tensor reachable from ``obj`` through dataclass fields, dicts, lists, tuples and inspector objects."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [(path, obj)]
    found: list[tuple[str, torch.Tensor]] = []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [(f".{f.name}", getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    elif isinstance(obj, dict):
        items = [(f"[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(f"[{i}]", v) for i, v in enumerate(obj)]
    elif type(obj).__module__.startswith("inspector") and hasattr(obj, "__dict__"):
        items = [(f".{k}", v) for k, v in vars(obj).items()]
    else:
        items = []
    for suffix, value in items:
        found.extend(tensors_in(value, path + suffix, seen))
    return found


def assert_ordinary(captures: Any) -> int:
    """Checks that no tensor in ``captures`` is an inference tensor and that each takes an in-place update."""
    found = tensors_in(captures)
    assert found, "no tensors found: the walk is broken"
    bad = [path for path, t in found if t.is_inference()]
    assert not bad, f"inference tensors handed back: {bad}"
    for _, t in found:
        if t.numel():
            t.add_(0) if t.dtype != torch.bool else t.logical_or_(t)
    return len(found)


def test_the_check_sees_an_inference_tensor():
    with torch.inference_mode():
        t = torch.zeros(3)
    with pytest.raises(AssertionError, match="inference tensors"):
        assert_ordinary({"x": [torch.ones(2), t]})


@pytest.mark.parametrize("kwargs", [
    {},
    {"keep_logits": True, "keep_hidden_states": True, "keep_value_norms": True, "lens_k": 3},
    {"do_sample": True, "seed": 3, "top_k": 20, "repetition_penalty": 1.3},
    {"num_beams": 2, "num_return_sequences": 2},
    {"layers": [1], "heads": [0], "attention_rows": "generated"},
    {"head_reduce": "mean", "keep_attention": False, "keep_hidden_states": True},
], ids=["greedy", "everything", "sampling", "beams", "selective", "no-attention"])
def test_captures_hold_no_inference_tensors(byte_tiny, kwargs):
    caps = byte_tiny.generate(PROMPTS, max_new_tokens=4, **kwargs)
    assert_ordinary(caps)
    cap = caps[0]
    # the generation itself still happened under inference mode, and autograd works on what it kept
    if cap.attentions is not None:
        cap.attentions.float().requires_grad_()


def test_kept_prompt_cache_is_written_again_outside_inference_mode(byte_tiny):
    """The cache generate_with_prompt_cache hands back is cropped and extended by a teacher-forced pass
    outside inference mode, in place (its reserved room), and gives the logits of a fresh forward pass."""
    caps, cache = generate_with_prompt_cache(byte_tiny, PROMPTS, GenerationSettings(max_new_tokens=3),
                                             [{"kind": "text"}] * len(PROMPTS))
    assert_ordinary(caps)
    assert cache is not None
    assert not any(layer.keys.is_inference() or layer.values.is_inference() for layer in cache.cache.layers)
    from inspector._compat import cache_kwarg

    kv, mask, kept = cache.take([0, 1], cache.width)
    nxt = torch.tensor([[5], [6]])
    full_mask = torch.cat([mask, mask.new_ones((2, 1))], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]
    with torch.no_grad():
        got = byte_tiny.model(input_ids=nxt, attention_mask=full_mask, position_ids=positions,
                              **{cache_kwarg(byte_tiny.model): kv}, use_cache=True).logits[:, -1]
        ids = torch.cat([cache.input_ids, nxt], dim=1)
        ref = byte_tiny.model(input_ids=ids, attention_mask=full_mask,
                              position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_generation_runs_under_inference_mode_and_leaves_it(byte_tiny):
    seen: list[bool] = []
    byte_tiny.generate("ab", max_new_tokens=3,
                       on_step=lambda done, total: seen.append(torch.is_inference_mode_enabled()))
    assert seen == [True, True, True]
    assert not torch.is_inference_mode_enabled()
