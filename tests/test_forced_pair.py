"""Shared-prefix pair scoring against independent forward passes over each item alone, and against score_tokens."""

from __future__ import annotations

import pytest
import torch

from inspector._capture.forced import score_tokens
from inspector._capture.forced_pair import score_token_pairs, shared_prefix_lengths
from inspector._compat import cache_kwarg

# plain and conditioned prompts as a corpus run builds them (the cue gains a target), plus pairs that share
# nothing, share only one token, or where one prompt is the other's prefix
PLAIN = [
    "User: hey how are you?\nAgent:",
    "User: what time does the train leave tomorrow morning?\nAgent:",
    "Hi",
    "Hello there",
    "User: ok\nAgent:",
]
COND = [
    "User: hey how are you?\nAgent (happiness):",
    "User: what time does the train leave tomorrow morning?\nAgent [inform]:",
    "Yo",
    "Hello there, my friend",
    "User: ok\nAgent (no emotion):",
]
REPLIES = [" I am fine, thanks.", " At nine.", " there, friend, how is it going today", " hi", " Sure!"]


def encode(im, text: str) -> list[int]:
    return list(im.tokenizer(text, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def alone(im, p: list[int], c: list[int]) -> torch.Tensor:
    """float64 logits ``[len(c), vocab]`` predicting ``c`` from one unpadded pass over ``p + c`` alone."""
    out = im.model(input_ids=torch.tensor([p + c]), use_cache=False)
    return out.logits[0, len(p) - 1 : -1].double()


def assert_same_capture(got, want, ref_logits: torch.Tensor) -> None:
    assert got.token_ids.tolist() == want.token_ids.tolist()
    assert (got.prompt_len, got.prompt_text, got.generated_text) == (want.prompt_len, want.prompt_text,
                                                                     want.generated_text)
    assert got.stop_reason == want.stop_reason == "forced"
    assert got.tokens == want.tokens and got.labels == want.labels
    assert got.attentions is None and want.attentions is None
    assert got.logits is not None and want.logits is not None
    assert (got.logits.double() - ref_logits).abs().max().item() <= 1e-4
    assert (got.logits - want.logits).abs().max().item() <= 1e-4
    for scores in (got.raw, got.processed):
        assert torch.allclose(scores.chosen_logprob, want.raw.chosen_logprob, atol=1e-5)
        assert torch.allclose(scores.entropy, want.raw.entropy, atol=1e-5)
        assert torch.allclose(scores.topk_logprobs, want.raw.topk_logprobs, atol=1e-5)
        assert torch.equal(scores.chosen_rank, want.raw.chosen_rank)
        assert torch.equal(scores.topk_ids, want.raw.topk_ids)
    gm, wm = got.meta, want.meta
    assert (gm.generation, gm.source, gm.model, gm.tokenizer, gm.attention_dtype) == (
        wm.generation, wm.source, wm.model, wm.tokenizer, wm.attention_dtype)


def check_pairs(im, plain: list[str], cond: list[str], replies: list[str], **cache) -> None:
    """Pair scoring (``cache``: ``prompt_cache`` and ``cache_rows``) against score_tokens and each item alone."""
    p1 = [encode(im, t) for t in plain]
    p2 = [encode(im, t) for t in cond]
    cs = [encode(im, t) for t in replies]
    first, second = score_token_pairs(im, p1, p2, cs, first_texts=plain, second_texts=cond, keep_logits=True,
                                      sources={"kind": "test"}, **cache)
    for prompts, texts, got in ((p1, plain, first), (p2, cond, second)):
        want = score_tokens(im, prompts, cs, prompt_texts=texts, keep_logits=True, keep_attention=False,
                            sources={"kind": "test"})
        assert len(got) == len(want) == len(prompts)
        for g, w, p, c in zip(got, want, prompts, cs, strict=True):
            assert_same_capture(g, w, alone(im, p, c))


def test_pairs_equal_each_item_alone_byte_tiny(byte_tiny):
    im = byte_tiny
    lens = shared_prefix_lengths([encode(im, t) for t in PLAIN], [encode(im, t) for t in COND])
    assert lens[2] == 0 and lens[3] == len("Hello there") - 1  # nothing shared; a prompt that prefixes the other
    check_pairs(im, PLAIN, COND, REPLIES)


def test_pairs_equal_each_item_alone_real_tokenizer(tiny):
    check_pairs(tiny, PLAIN, COND, REPLIES)


def test_only_unshared_items_and_only_shared_items(byte_tiny):
    check_pairs(byte_tiny, PLAIN[2:3], COND[2:3], REPLIES[2:3])  # every item scored alone
    check_pairs(byte_tiny, PLAIN[:2], COND[:2], REPLIES[:2])  # every item through the prefix cache


def generated_cache(im, prompts: list[str]):
    """The prompt cache a 3-token greedy batch generation from ``prompts`` leaves."""
    from inspector._capture.engine import generate_with_prompt_cache
    from inspector._capture.settings import GenerationSettings

    caps, cache = generate_with_prompt_cache(im, prompts, GenerationSettings(max_new_tokens=3),
                                             [{"kind": "test"}] * len(prompts))
    assert len(caps) == len(prompts) and cache is not None
    return cache


def count_prefix_passes(monkeypatch) -> list[int]:
    import inspector._capture.forced_pair as fp

    calls: list[int] = []
    real = fp._prefix_cache

    def counted(im, prefixes):
        calls.append(len(prefixes))
        return real(im, prefixes)

    monkeypatch.setattr(fp, "_prefix_cache", counted)
    return calls


@pytest.mark.parametrize("fixture", ["byte_tiny", "tiny"])
def test_after_a_generations_prompt_cache(fixture, request, monkeypatch):
    """Scoring after the cache a generation from the second prompts left equals scoring without it; no
    prefix pass is run for the items it covers, others (a row holding another prompt) take the usual path."""
    im = request.getfixturevalue(fixture)
    passes = count_prefix_passes(monkeypatch)
    shared = [0, 1, 3, 4]  # items that share a prefix (item 2 shares nothing and is scored alone)
    plain, cond, replies = [PLAIN[i] for i in shared], [COND[i] for i in shared], [REPLIES[i] for i in shared]
    # the generation holds one more prompt nobody scores, first, so that item i is cache row i + 1
    cache = generated_cache(im, ["User: a prompt that is generated from but not scored\nAgent:", *cond])
    check_pairs(im, plain, cond, replies, prompt_cache=cache, cache_rows=[1, 2, 3, 4])
    assert passes == []
    # rows given in another order: each item finds its own prompt only in its own row
    cache = generated_cache(im, cond)
    check_pairs(im, plain, cond, replies, prompt_cache=cache, cache_rows=[0, 2, 1, 3])
    assert passes == [2]  # items 1 and 2 point at each other's rows: one prefix pass for both
    check_pairs(im, PLAIN, COND, REPLIES, prompt_cache=generated_cache(im, COND), cache_rows=[0, 1, 2, 3, 4])
    assert passes == [2]  # the unshared item 2 is scored alone, the rest from the cache


def test_prompt_cache_needs_one_row_per_item(byte_tiny):
    cache = generated_cache(byte_tiny, COND[:2])
    with pytest.raises(ValueError, match="one cache row per item"):
        score_token_pairs(byte_tiny, [encode(byte_tiny, t) for t in PLAIN[:2]],
                          [encode(byte_tiny, t) for t in COND[:2]], [[4], [5]], prompt_cache=cache, cache_rows=[0])


@pytest.mark.slow
def test_full_size_gpt2(gpt2_random):
    check_pairs(gpt2_random, PLAIN[:2], COND[:2], REPLIES[:2])


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "opt"])
def test_other_architectures(arch):
    """Rotary (llama, gpt_neox) and learned-offset (OPT) positions continue correctly from the prefix cache."""
    from test_forced import tiny_architecture

    im = tiny_architecture(arch)
    assert cache_kwarg(im.model) in ("cache", "past_key_values")
    check_pairs(im, PLAIN, COND, REPLIES)


def test_refusals_before_model_work(byte_tiny):
    with pytest.raises(ValueError, match="no attention"):
        score_token_pairs(byte_tiny, [[1, 2]], [[1, 3]], [[4]], keep_attention=True)
    with pytest.raises(ValueError, match="two prompts per item"):
        score_token_pairs(byte_tiny, [[1, 2]], [], [[4]])
    with pytest.raises(ValueError, match="continuation 0 has no tokens"):
        score_token_pairs(byte_tiny, [[1, 2]], [[1, 3]], [[]])
    with pytest.raises(ValueError, match="more than the model's"):
        score_token_pairs(byte_tiny, [[1, 2]], [[1] * byte_tiny.context_length], [[4]])


def test_output_layer_sees_only_the_forced_positions(byte_tiny, monkeypatch):
    """The vocabulary projection runs on the positions that predict forced tokens, not the padded window;
    a model whose output layer is not a module falls back to the window, with the same results."""
    seen: list[tuple[int, ...]] = []
    head = byte_tiny.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, args, out: seen.append(tuple(args[0].shape)))
    try:
        check_pairs(byte_tiny, PLAIN[:2], COND[:2], REPLIES[:2])
    finally:
        handle.remove()
    forced = sum(len(encode(byte_tiny, r)) for r in REPLIES[:2])
    # the prefix pass keeps one position per item; each segment pass only the forced tokens
    d_model = byte_tiny.model.config.hidden_size
    assert seen[:3] == [(2, 1, d_model)] + [(1, forced, d_model)] * 2
    monkeypatch.setattr(type(byte_tiny.model), "get_output_embeddings", lambda self: None)
    check_pairs(byte_tiny, PLAIN[:2], COND[:2], REPLIES[:2])
