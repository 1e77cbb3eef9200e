"""Kept logits (``keep_logits=True``) live in one buffer: no second full-vocabulary copy while capturing.

At the end of the assembly (the capture's peak: everything recorded is still alive and every capture
exists), the live float32 tensors whose last axis is the vocabulary are counted by the storage they
share, from the garbage collector's own list of objects: greedy and sampled captures must be views of
a single ``[row, step, vocab]`` buffer; beams (which move between rows) may add their gathered copies,
nothing more. Every kept row is also checked against a teacher-forced pass over the capture's tokens.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from inspector._capture import engine

#: The tiny model's vocabulary: large next to its 32-wide layers, so the logits are most of what is kept.
VOCAB = 16384
PROMPTS = ["User: tell me about the train", "User: tell me about the plane", "User: tell me about the hotel"]


@pytest.fixture(scope="module")
def wide(tokenizer):
    """A 2-layer, 32-wide random GPT-2 with a 16,384-token output layer (GPT-2's tokenizer; the prompts'
    ids are all below 16,384 and no id of the model is EOS, so every row runs to the length limit)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import inspector

    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=256,
                        bos_token_id=None, eos_token_id=None)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config).eval()
    assert model.lm_head.out_features == VOCAB
    for p in PROMPTS:
        ids = tokenizer(p)["input_ids"]
        assert len(ids) == 7 and max(ids) < VOCAB, "the prompts must fit the small vocabulary unpadded"
    return inspector.InspectorModel.from_model(model, tokenizer, name="wide-gpt2", random_weights=True)


def vocab_storages(model: torch.nn.Module, vocab: int) -> dict[int, int]:
    """Bytes of every distinct storage behind a live float32 ``[..., vocab]`` tensor (parameters excluded)."""
    gc.collect()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    found: dict[int, int] = {}
    for obj in gc.get_objects():
        if (issubclass(type(obj), torch.Tensor) and obj.dtype == torch.float32 and obj.dim() >= 2
                and int(obj.shape[-1]) == vocab):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in params:
                found[storage.data_ptr()] = storage.nbytes()
    return found


@pytest.fixture
def at_assembly_end(monkeypatch) -> Iterator[Callable[[torch.nn.Module, int], list[dict[int, int]]]]:
    """Records :func:`vocab_storages` right after each call of the engine's assembly."""
    seen: list[dict[int, int]] = []
    model_vocab: dict[str, Any] = {}
    original = engine.assemble

    def spy(*args: Any, **kwargs: Any) -> Any:
        captures = original(*args, **kwargs)
        seen.append(vocab_storages(model_vocab["model"], model_vocab["vocab"]))
        return captures

    def arm(model: torch.nn.Module, vocab: int) -> list[dict[int, int]]:
        model_vocab.update(model=model, vocab=vocab)
        return seen

    monkeypatch.setattr(engine, "assemble", spy)
    yield arm


@torch.no_grad()
def teacher_forced_rows(im: Any, cap: Any) -> torch.Tensor:
    """``[step, vocab]``: the logits that produced each generated token, from one pass over the sequence."""
    logits = im.model(input_ids=cap.token_ids[None], use_cache=False).logits[0].float()
    return logits[cap.prompt_len - 1 : -1]


def check_rows(im: Any, caps: list[Any]) -> int:
    """Every capture's kept logits equal a teacher-forced pass; returns the bytes the captures keep of them."""
    kept = 0
    for cap in caps:
        assert cap.logits is not None and cap.logits.dtype == torch.float32
        ref = teacher_forced_rows(im, cap)
        assert cap.logits.shape == ref.shape
        assert (cap.logits - ref).abs().max().item() <= 1e-4
        kept += cap.logits.numel() * 4
    return kept


@pytest.mark.parametrize(("kwargs", "rows"), [
    ({}, 1),  # greedy, batch 1: steps reduced several at a time
    ({"batch": True}, 3),  # greedy, batch 3
    ({"batch": True, "do_sample": True, "num_return_sequences": 2, "seed": 3}, 6),
    ({"batch": True, "repetition_penalty": 1.3}, 3),
])
def test_one_buffer_holds_the_kept_logits(wide, at_assembly_end, kwargs, rows):
    kwargs = dict(kwargs)
    prompts = PROMPTS if kwargs.pop("batch", False) else PROMPTS[:1]
    steps = 12
    seen = at_assembly_end(wide.model, VOCAB)
    caps = wide.generate(prompts, max_new_tokens=steps, keep_logits=True, **kwargs)
    assert len(caps) == rows and all(c.num_steps == steps for c in caps)
    kept = check_rows(wide, caps)
    assert kept == rows * steps * VOCAB * 4
    (live,) = seen
    # one storage, the size of what the captures keep: no per-step copies, no stacked copy, no gathered copies
    assert sorted(live.values()) == [kept], f"live [.., vocab] float32 storages: {sorted(live.values())}"
    assert {c.logits.untyped_storage().data_ptr() for c in caps} == set(live)


def test_beams_add_only_their_gathered_copies(wide, at_assembly_end):
    """Beam search: the buffer holds every running row; each returned beam gathers its own rows through
    ``beam_indices`` (checked against its own teacher-forced pass), and nothing else is alive."""
    steps, beams = 10, 3
    seen = at_assembly_end(wide.model, VOCAB)
    caps = wide.generate(PROMPTS[:2], max_new_tokens=steps, num_beams=beams, num_return_sequences=2,
                         keep_logits=True)
    assert len(caps) == 4
    kept = check_rows(wide, caps)
    (live,) = seen
    buffer = len(PROMPTS[:2]) * beams * steps * VOCAB * 4
    assert sum(live.values()) <= buffer + kept, f"live [.., vocab] float32 storages: {sorted(live.values())}"


@pytest.mark.parametrize("field", ["output_logits", "output_scores"])
def test_a_model_asking_generate_for_its_logits_adds_no_copy(wide, at_assembly_end, field):
    """A model whose own ``generation_config`` asks ``generate`` to hand back per-step logits or scores
    must not make ``generate`` keep a second copy beside the kept one."""
    gen_config = wide.model.generation_config
    before = getattr(gen_config, field, None)
    setattr(gen_config, field, True)
    try:
        seen = at_assembly_end(wide.model, VOCAB)
        caps = wide.generate(PROMPTS, max_new_tokens=8, keep_logits=True)
    finally:
        setattr(gen_config, field, before)
    kept = check_rows(wide, caps)
    (live,) = seen
    assert sum(live.values()) == kept, f"live [.., vocab] float32 storages: {sorted(live.values())}"


@pytest.mark.slow
def test_full_size_gpt2_keeps_one_copy(gpt2_random, at_assembly_end):
    """GPT-2 small (50,257 tokens), batch 4 x 24 steps (about 19 MB of logits), greedy then beams."""
    vocab = int(gpt2_random.model.lm_head.out_features)
    seen = at_assembly_end(gpt2_random.model, vocab)
    prompts = [f"User: what is on at the cinema tonight, number {i}?\nAgent:" for i in range(4)]
    caps = gpt2_random.generate(prompts, max_new_tokens=24, keep_logits=True)
    kept = check_rows(gpt2_random, caps)
    buffer = len(prompts) * 24 * vocab * 4
    assert kept <= buffer
    # one storage: the buffer (rows that stopped early use part of it)
    assert len(seen[0]) == 1 and sum(seen[0].values()) <= buffer, sorted(seen[0].values())
    del caps  # the greedy captures' buffer would count below
    beams = gpt2_random.generate(prompts[:2], max_new_tokens=12, num_beams=2, keep_logits=True)
    kept = check_rows(gpt2_random, beams)
    assert sum(seen[1].values()) <= 2 * 2 * 12 * vocab * 4 + kept, sorted(seen[1].values())
