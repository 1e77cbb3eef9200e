"""The size estimate against real captures, and the memory budget refusing a request before generation."""

from __future__ import annotations

import pytest
import torch
from conftest import make_byte_tiny

from inspector._capture.budget import (
    MemoryBudgetError,
    ModelSizes,
    alternatives,
    default_budget,
    estimate_capture,
)
from inspector._capture.selection import parse_budget
from inspector._capture.settings import GenerationSettings
from inspector._store import capture_bytes

#: The estimate is an upper bound, and at most this many times what full-length captures keep (the slack is
#: the allowance for each file's JSON document, which dominates only for very small captures).
FACTOR = 2.0
PROMPTS = ["the quick brown fox jumps over the lazy dog " * 2, "hello there"]
CONFIGS = [
    {},
    {"attention_rows": "generated"},
    {"head_reduce": "mean", "layers": [1, 2]},
    {"heads": [0, 3], "attention_dtype": "float32"},
    {"keep_hidden_states": True, "keep_value_norms": True, "keep_logits": True},
    {"lens_k": 3, "hidden_dtype": "float32"},
    {"do_sample": True, "seed": 1, "num_return_sequences": 2},
    {"num_beams": 2, "num_return_sequences": 2},
]


@pytest.fixture(scope="module")
def im():
    return make_byte_tiny(n_layer=3, n_head=4, n_embd=32)




@pytest.mark.parametrize("kw", CONFIGS, ids=lambda k: ",".join(k) or "default")
def test_estimate_bounds_real_captures(im, kw):
    settings = GenerationSettings(max_new_tokens=12, **kw).selected(im.num_layers, im.num_heads)
    caps = im.generate(PROMPTS, settings=settings)
    caps = caps if isinstance(caps, list) else [caps]
    lens = [len(p) for p in PROMPTS]  # the byte tokenizer: one token per character
    est = estimate_capture(settings, ModelSizes.of(im.model), lens)
    tensor_bytes = sum(c.nbytes for c in caps)
    file_bytes = sum(len(capture_bytes(c)) for c in caps)
    assert est.kept >= file_bytes >= tensor_bytes
    if all(c.num_steps == settings.max_new_tokens for c in caps):  # the bound is tight only at full length
        assert est.kept <= FACTOR * file_bytes, (est, file_bytes)
    assert est.peak >= est.kept + est.buffers - 1


def test_estimate_bounds_a_capture_with_the_real_tokenizer(tiny):
    settings = GenerationSettings(max_new_tokens=10, top_k_logits=20).selected(tiny.num_layers, tiny.num_heads)
    prompt = "User: what time does the train leave tomorrow morning?\nAgent:"
    cap = tiny.generate(prompt, settings=settings)
    est = estimate_capture(settings, ModelSizes.of(tiny.model), [cap.prompt_len])
    assert est.kept >= len(capture_bytes(cap))


def test_estimate_by_hand():
    s = GenerationSettings(max_new_tokens=4, attention_dtype="float32").selected(12, 12)
    sizes = ModelSizes(num_layers=12, num_heads=12, d_model=768, vocab_size=50257)
    est = estimate_capture(s, sizes, [10])
    assert est.attention == 12 * 12 * 14 * 14 * 4
    rows = estimate_capture(GenerationSettings(max_new_tokens=4, attention_rows="generated").selected(12, 12),
                            sizes, [10])
    assert rows.attention == 12 * 12 * 4 * 14 * 2
    mean = estimate_capture(GenerationSettings(max_new_tokens=4, head_reduce="mean", layers=(0, 5)).selected(12, 12),
                            sizes, [10, 6])
    assert mean.attention == 2 * 1 * (14 * 14 + 10 * 10) * 2
    hidden = estimate_capture(GenerationSettings(max_new_tokens=4, keep_hidden_states=True, keep_attention=False)
                              .selected(12, 12), sizes, [10])
    assert hidden.attention == 0 and hidden.hidden_states == 13 * 14 * 768 * 2


def test_over_budget_is_refused_before_the_model_runs_with_the_options_that_fit(im, monkeypatch):
    settings = GenerationSettings(max_new_tokens=40, attention_dtype="float32").selected(3, 4)
    sizes = ModelSizes.of(im.model)
    prompt = "x" * 200
    full = estimate_capture(settings, sizes, [200])
    rows = dict(alternatives(settings, sizes, [200]))["--attention-rows generated"]
    budget = (full.peak + rows.peak) // 2  # the generated rows fit, the full capture does not
    assert rows.peak < budget < full.peak

    def boom(*a, **k):
        raise AssertionError("the model ran")

    with monkeypatch.context() as m:
        m.setattr(im.model, "forward", boom)
        with pytest.raises(MemoryBudgetError) as err:
            im.generate(prompt, max_new_tokens=40, attention_dtype="float32", memory_budget=budget)
    text = str(err.value)
    assert "--memory-budget" in text and "--attention-rows generated (" in text
    assert "--layers" not in text or "--layers 0 (" in text
    # what the message offers does fit: the same request with it runs
    cap = im.generate(prompt, max_new_tokens=40, attention_dtype="float32", memory_budget=budget,
                      attention_rows="generated")
    assert cap.step_attentions is not None
    assert im.generate(prompt, max_new_tokens=2, memory_budget="off") is not None


def test_nothing_fits(im):
    with pytest.raises(MemoryBudgetError, match="no selective setting fits"):
        im.generate("hello", max_new_tokens=5, memory_budget=10)


def test_default_budget_is_half_the_available_memory(im, monkeypatch):
    from inspector._capture import budget as budget_mod

    monkeypatch.setattr(budget_mod, "_mem_available", lambda: 2_000_000)
    assert default_budget(torch.device("cpu")) == (1_000_000, "half the free memory of cpu")
    with pytest.raises(MemoryBudgetError, match=r"budget of 1\.0 MB \(half the free memory of cpu\)"):
        im.generate("x" * 300, max_new_tokens=60)
    monkeypatch.setattr(budget_mod, "_mem_available", lambda: None)
    assert default_budget(torch.device("cpu"))[0] is None
    assert im.generate("hi", max_new_tokens=2) is not None  # no known budget: no check


@pytest.mark.parametrize(("text", "value"), [("4GB", 4 * 10**9), ("512 MiB", 512 * 2**20), ("1.5gb", 15 * 10**8),
                                              (1000, 1000), ("off", "off"), (None, None), ("123", 123)])
def test_budget_values(text, value):
    assert parse_budget(text) == value
    assert GenerationSettings(memory_budget=text).memory_budget == value


@pytest.mark.parametrize("bad", ["4 parsecs", "-1GB", -5, True, [1], "GB"])
def test_bad_budget(bad):
    with pytest.raises(ValueError, match="memory_budget"):
        GenerationSettings(memory_budget=bad)
