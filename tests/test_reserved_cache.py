"""The reserved KV cache: bit-identical to transformers' growing DynamicCache, and used by the capture."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from inspector._capture.reserved_cache import ReservedLayer, reserved_cache

PROMPTS = ["User: hey how are you?\nAgent:", "Hi", "User: what time does the train leave tomorrow?\nAgent:"]


def generate(im, cache, new_tokens: int = 6):
    enc = im.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    kw = {} if cache is None else {"cache": cache}
    with torch.no_grad():
        return im.model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, pad_token_id=im.tokenizer.pad_token_id, **kw)


def key_buf(layer: ReservedLayer) -> torch.Tensor:
    """The layer's reserved key buffer (the checks below rely on one being reserved)."""
    assert layer._key_buf is not None
    return layer._key_buf


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
    """The prefill stays compact; the next write moves it into the reserved room. Cropping keeps a view (the
    next write lands after it); selecting rows leaves the buffer (concatenation)."""
    layer = ReservedLayer(8)
    k = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).view(2, 3, 5, 4)
    keys, _ = layer.update(k, -k)
    assert torch.equal(keys, k) and layer._key_buf is None  # nothing reserved during the prefill
    layer.crop(-2)
    keys, values = layer.update(k[:, :, :1] + 100, -k[:, :, :1] - 100)
    assert torch.equal(keys, torch.cat([k[:, :, :3], k[:, :, :1] + 100], dim=-2))
    assert torch.equal(values, -keys) and keys.data_ptr() == key_buf(layer).data_ptr()
    assert key_buf(layer).shape[-2] == 8
    layer.crop(-1)
    keys, _ = layer.update(k[:, :, :2] + 200, -k[:, :, :2] - 200)  # after a crop: in place again
    assert torch.equal(keys, torch.cat([k[:, :, :3], k[:, :, :2] + 200], dim=-2))
    assert keys.data_ptr() == key_buf(layer).data_ptr()
    layer.batch_select_indices(torch.tensor([1]))
    keys, _ = layer.update(k[1:, :, :1], -k[1:, :, :1])
    assert keys.shape == (1, 3, 6, 4) and torch.equal(keys[0, :, -1], k[1, :, 0])
    plain = DynamicLayer()
    plain.update(k, -k)
    plain.crop(-2)
    plain.update(k[:, :, :1] + 100, -k[:, :, :1] - 100)
    plain.crop(-1)
    plain.update(k[:, :, :2] + 200, -k[:, :, :2] - 200)
    plain.batch_select_indices(torch.tensor([1]))
    assert torch.equal(plain.update(k[1:, :, :1], -k[1:, :, :1])[0], keys)


def test_the_capture_generates_with_it(byte_tiny):
    from inspector._capture.engine import generate_with_prompt_cache
    from inspector._capture.settings import GenerationSettings

    caps, cache = generate_with_prompt_cache(byte_tiny, PROMPTS, GenerationSettings(max_new_tokens=4),
                                             [{"kind": "test"}] * len(PROMPTS))
    assert cache is not None and all(type(layer) is ReservedLayer for layer in cache.cache.layers)
    # the prompt and the 4 new tokens (the last one written by the extra step for its attention row): no more room
    layer = cache.cache.layers[0]
    assert layer.keys.data_ptr() == layer._key_buf.data_ptr()
    assert layer.keys.shape[-2] == layer._key_buf.shape[-2] == cache.width + 4
    assert all(c.num_steps == 4 for c in caps)


def test_the_prefill_is_not_reserved_on_top_of_its_temporaries(byte_tiny, monkeypatch):
    """Each layer reserves its room at its first update after the prefill, one layer at a time: the prefill's
    keys and values are compact while the prefill's own temporaries exist."""
    import inspector._capture.engine as engine

    seen: list[tuple[int, bool]] = []  # per update: positions written, whether the layer had reserved room
    real_update = ReservedLayer.update

    def update(self, k, v, *args, **kwargs):
        seen.append((int(k.shape[-2]), self._key_buf is not None))
        return real_update(self, k, v, *args, **kwargs)

    monkeypatch.setattr(ReservedLayer, "update", update)
    made: list[Any | None] = []  # what reserved_cache returned, per call
    real = engine.reserved_cache

    def recording(*a):
        made.append(real(*a))
        return made[-1]

    monkeypatch.setattr(engine, "reserved_cache", recording)
    cap = byte_tiny.generate(PROMPTS[0], max_new_tokens=3, layers=[0], attention_rows="generated")
    assert len(made) == 1 and made[0] is not None  # a small selective capture generates with it too
    layers = byte_tiny.num_layers
    prompt = cap.prompt_len
    # prefill: nothing reserved; the first step after it reserves (per layer); then every write lands in place
    assert seen[:layers] == [(prompt, False)] * layers
    assert seen[layers : 2 * layers] == [(1, False)] * layers
    assert seen[2 * layers :] == [(1, True)] * (len(seen) - 2 * layers)
    assert all(layer._key_buf is not None and layer.keys.data_ptr() == layer._key_buf.data_ptr()
               for layer in made[0].layers)


def test_not_for_beam_search_or_several_sequences(byte_tiny, monkeypatch):
    import inspector._capture.engine as engine

    made: list[Any | None] = []  # what reserved_cache returned, per call
    real = engine.reserved_cache

    def recording(*a):
        made.append(real(*a))
        return made[-1]

    monkeypatch.setattr(engine, "reserved_cache", recording)
    byte_tiny.generate(PROMPTS[:2], max_new_tokens=3, num_beams=2)
    byte_tiny.generate(PROMPTS[:2], max_new_tokens=3, do_sample=True, num_return_sequences=2, seed=0)
    assert made == []
    byte_tiny.generate(PROMPTS[:2], max_new_tokens=3)
    assert len(made) == 1 and made[0] is not None
