"""The reserved KV cache: bit-identical to transformers' growing DynamicCache, and used by the capture."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from inspector.capture.reserved_cache import ReservedLayer, reserved_cache

PROMPTS = ["User: hey how are you?\nAgent:", "Hi", "User: what time does the train leave tomorrow?\nAgent:"]


def generate(im, cache, new_tokens: int = 6):
    enc = im.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    kw = {} if cache is None else {"cache": cache}
    with torch.no_grad():
        return im.model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, pad_token_id=im.tokenizer.pad_token_id, **kw)


@pytest.mark.parametrize("capacity", [64, 3])  # room for everything; too little (continues by concatenation)
def test_same_tokens_and_logits_as_the_growing_cache(byte_tiny, capacity):
    width = byte_tiny.tokenizer(PROMPTS, return_tensors="pt", padding=True)["input_ids"].shape[1]
    want = generate(byte_tiny, None)
    cache = reserved_cache(byte_tiny.model, capacity if capacity < width else width + 6)
    assert cache is not None and all(type(layer) is ReservedLayer for layer in cache.layers)
    got = generate(byte_tiny, cache)
    assert torch.equal(got.sequences, want.sequences)
    for g, w in zip(got.logits, want.logits, strict=True):
        assert torch.equal(g, w)
    layer = cache.layers[0]
    # in place: the keys are a view of the reserved buffer (unless it was too small)
    assert (layer.keys.data_ptr() == layer._key_buf.data_ptr()) == (capacity >= width)


def test_crop_select_and_write_again(byte_tiny):
    """Cropping keeps a view (the next write lands after it); selecting rows leaves the buffer (concatenation)."""
    layer = ReservedLayer(8)
    k = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).view(2, 3, 5, 4)
    keys, _ = layer.update(k, -k)
    assert torch.equal(keys, k) and keys.data_ptr() == layer._key_buf.data_ptr()
    layer.crop(-2)
    keys, values = layer.update(k[:, :, :1] + 100, -k[:, :, :1] - 100)
    assert torch.equal(keys, torch.cat([k[:, :, :3], k[:, :, :1] + 100], dim=-2))
    assert torch.equal(values, -keys) and keys.data_ptr() == layer._key_buf.data_ptr()
    layer.batch_select_indices(torch.tensor([1]))
    keys, _ = layer.update(k[1:, :, :1], -k[1:, :, :1])
    assert keys.shape == (1, 3, 5, 4) and torch.equal(keys[0, :, -1], k[1, :, 0])
    plain = DynamicLayer()
    plain.update(k, -k)
    plain.crop(-2)
    plain.update(k[:, :, :1] + 100, -k[:, :, :1] - 100)
    plain.batch_select_indices(torch.tensor([1]))
    assert torch.equal(plain.update(k[1:, :, :1], -k[1:, :, :1])[0], keys)


def test_the_capture_generates_with_it(byte_tiny, monkeypatch):
    from inspector.capture import GenerationSettings
    from inspector.capture.engine import generate_with_prompt_cache

    # this tiny capture keeps less than the cache's page overhead bound: allow it here (see the test below)
    monkeypatch.setattr("inspector.capture.reserved_cache.MAX_PAGE_OVERHEAD", float("inf"))
    caps, cache = generate_with_prompt_cache(byte_tiny, PROMPTS, GenerationSettings(max_new_tokens=4),
                                             [{"kind": "test"}] * len(PROMPTS))
    assert cache is not None and all(type(layer) is ReservedLayer for layer in cache.cache.layers)
    # the prompt and the 4 new tokens (the last one written by the extra step for its attention row): no more room
    layer = cache.cache.layers[0]
    assert layer.keys.data_ptr() == layer._key_buf.data_ptr()
    assert layer.keys.shape[-2] == layer._key_buf.shape[-2] == cache.width + 4
    assert all(c.num_steps == 4 for c in caps)


def test_only_where_its_memory_is_small_next_to_the_capture(byte_tiny, gpt2_random):
    """On the CPU a reserved cache may hold up to a page per (row, KV head, layer, keys or values) more than
    a compact one; the capture uses it when that is at most a quarter of what it keeps."""
    import mmap

    from inspector.capture import GenerationSettings
    from inspector.capture.budget import ModelSizes, estimate_capture
    from inspector.capture.engine import generate_with_prompt_cache
    from inspector.capture.reserved_cache import MAX_PAGE_OVERHEAD, page_overhead, worth_reserving

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert page_overhead(gpt2_random.model, 16) == 16 * 12 * 12 * 2 * mmap.PAGESIZE  # 18.9 MB with 4 KiB pages
    assert worth_reserving(gpt2_random.model, cpu, 16, 76 * 10**6)  # a full 64 + 64-token capture keeps 76 MB
    assert not worth_reserving(gpt2_random.model, cpu, 16, 10 * 10**6)  # 3 layers' generated rows: 10 MB
    assert worth_reserving(gpt2_random.model, cuda, 16, 1)  # a device allocates whole blocks either way
    for settings, reserved in ((GenerationSettings(max_new_tokens=4), False),
                               (GenerationSettings(max_new_tokens=60), True)):
        lens = [len(byte_tiny.tokenizer(p)["input_ids"]) for p in PROMPTS]
        kept = estimate_capture(settings.selected(byte_tiny.num_layers, byte_tiny.num_heads, "tiny"),
                                ModelSizes.of(byte_tiny.model), lens).kept
        assert (page_overhead(byte_tiny.model, 3) <= MAX_PAGE_OVERHEAD * kept) is reserved
        _, cache = generate_with_prompt_cache(byte_tiny, PROMPTS, settings, [{"kind": "test"}] * 3)
        assert cache is not None
        assert all(type(layer) is (ReservedLayer if reserved else DynamicLayer) for layer in cache.cache.layers)


def test_not_for_beam_search_or_several_sequences(byte_tiny, monkeypatch):
    import inspector
    import inspector.capture.engine as engine

    monkeypatch.setattr("inspector.capture.reserved_cache.MAX_PAGE_OVERHEAD", float("inf"))
    made: list[object] = []
    real = engine.reserved_cache
    monkeypatch.setattr(engine, "reserved_cache", lambda *a: made.append(real(*a)) or made[-1])
    inspector.generate(byte_tiny, PROMPTS[:2], max_new_tokens=3, num_beams=2)
    inspector.generate(byte_tiny, PROMPTS[:2], max_new_tokens=3, do_sample=True, num_return_sequences=2, seed=0)
    assert made == []
    inspector.generate(byte_tiny, PROMPTS[:2], max_new_tokens=3)
    assert len(made) == 1 and made[0] is not None
