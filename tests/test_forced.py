"""Teacher-forced scoring against independent references: a forward pass over each item alone, ranks by hand."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch

from inspector._capture.forced import is_forced, score, score_tokens
from inspector._records.capture import Capture

PROMPTS = ["User: hey how are you?\nAgent:", "Hi", "User: what time does the train leave tomorrow?\nAgent:"]
REPLIES = [" I am fine, thanks.", " there, friend", " At nine."]


@torch.no_grad()
def reference(im, ids: list[int]):
    """One forward pass over the unpadded sequence alone: ([layer, head, seq, seq], [seq, vocab]) float64 logits."""
    out = im.model(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
    return torch.stack([a[0] for a in out.attentions]).float(), out.logits[0].double()


def encode(im, text: str) -> list[int]:
    return list(im.tokenizer(text, add_special_tokens=False)["input_ids"])


def assert_matches_reference(im, cap, prompt: str, reply: str) -> None:
    p_ids, c_ids = encode(im, prompt), encode(im, reply)
    assert cap.token_ids.tolist() == p_ids + c_ids
    assert cap.prompt_len == len(p_ids) and cap.num_steps == len(c_ids)
    ref_att, ref_logits = reference(im, p_ids + c_ids)
    assert cap.attentions is not None and cap.attentions.shape == ref_att.shape
    assert (cap.attentions.float() - ref_att).abs().max().item() <= 1e-5
    rows = ref_logits[len(p_ids) - 1 : -1]  # row i predicts continuation token i
    logp = torch.log_softmax(rows, dim=-1)
    forced = torch.tensor(c_ids)
    exp_lp = logp[torch.arange(len(c_ids)), forced]
    assert torch.allclose(cap.raw.chosen_logprob.double(), exp_lp, atol=1e-4)
    assert torch.allclose(cap.raw.entropy.double(), -(logp.exp() * logp).sum(-1), atol=1e-4)
    top = logp.topk(cap.raw.k, dim=-1)
    assert torch.allclose(cap.raw.topk_logprobs.double(), top.values, atol=1e-4)
    assert torch.equal(cap.raw.topk_ids, top.indices)
    # rank by hand: where the forced id sits in the full descending order
    order = logp.argsort(dim=-1, descending=True)
    hand = [order[i].tolist().index(int(t)) + 1 for i, t in enumerate(c_ids)]
    assert cap.raw.chosen_rank.tolist() == hand
    if cap.logits is not None:
        assert (cap.logits.double() - rows).abs().max().item() <= 1e-4


def test_single_matches_teacher_forced_pass(byte_tiny):
    cap = score(byte_tiny, PROMPTS[0], REPLIES[0], attention_dtype=torch.float32, keep_logits=True)
    assert isinstance(cap, Capture)
    assert_matches_reference(byte_tiny, cap, PROMPTS[0], REPLIES[0])
    assert is_forced(cap) and cap.meta.generation["mode"] == "forced"
    assert cap.stop_reason == "forced"
    for name in ("entropy", "chosen_logprob", "chosen_rank", "topk_ids", "topk_logprobs"):
        assert torch.equal(getattr(cap.processed, name), getattr(cap.raw, name))
    assert cap.generated_text == REPLIES[0] and cap.prompt_text == PROMPTS[0]
    assert cap.logits is not None and cap.logits.shape == (cap.num_steps, byte_tiny.model.config.vocab_size)
    assert bool((cap.raw.chosen_rank > 1).any()), "random weights should not predict the reply perfectly"


def test_batch_equals_each_item_alone(byte_tiny):
    caps = score(byte_tiny, PROMPTS, REPLIES, attention_dtype=torch.float32, keep_logits=True)
    assert isinstance(caps, list)
    assert [c.seq_len for c in caps] == [len(encode(byte_tiny, p + r)) for p, r in zip(PROMPTS, REPLIES, strict=True)]
    for cap, p, r in zip(caps, PROMPTS, REPLIES, strict=True):
        assert_matches_reference(byte_tiny, cap, p, r)
        alone = score(byte_tiny, p, r, attention_dtype=torch.float32, keep_logits=True)
        assert isinstance(alone, Capture)
        assert cap.attentions is not None and alone.attentions is not None
        assert (cap.attentions - alone.attentions).abs().max().item() <= 1e-5
        assert torch.allclose(cap.raw.chosen_logprob, alone.raw.chosen_logprob, atol=1e-4)
        assert torch.equal(cap.raw.chosen_rank, alone.raw.chosen_rank)


def test_rescoring_a_greedy_generation_reproduces_its_raw_scores(byte_tiny):
    gens = byte_tiny.generate(PROMPTS, max_new_tokens=15, attention_dtype=torch.float32)
    forced = score_tokens(
        byte_tiny,
        [g.token_ids[: g.prompt_len].tolist() for g in gens],
        [g.generated_ids.tolist() for g in gens],
        prompt_texts=[g.prompt_text for g in gens],
        attention_dtype=torch.float32,
    )
    for gen, cap in zip(gens, forced, strict=True):
        assert torch.equal(cap.token_ids, gen.token_ids)
        assert torch.allclose(cap.raw.chosen_logprob, gen.raw.chosen_logprob, atol=1e-4)
        assert torch.allclose(cap.raw.entropy, gen.raw.entropy, atol=1e-4)
        assert torch.allclose(cap.raw.topk_logprobs, gen.raw.topk_logprobs, atol=1e-4)
        assert torch.equal(cap.raw.topk_ids, gen.raw.topk_ids)
        assert bool((cap.raw.chosen_rank == 1).all())  # greedy chose the argmax every time
        assert cap.attentions is not None and gen.attentions is not None
        assert (cap.attentions - gen.attentions).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_full_size_gpt2_matches_teacher_forced_pass(gpt2_random):
    prompt, reply = "User: hey how are you? \nAgent:", " I am fine, thank you. And you?"
    caps = score(gpt2_random, [prompt, "Hi"], [reply, " there"], attention_dtype=torch.float32, keep_logits=True)
    assert isinstance(caps, list)
    cap = caps[0]
    assert cap.attentions is not None and cap.attentions.shape[:2] == (12, 12)
    assert_matches_reference(gpt2_random, cap, prompt, reply)


def test_options_and_storage(byte_tiny, tmp_path):
    from inspector._store import load_capture

    cap = score(byte_tiny, "Hello", " world", keep_attention=False, top_k_logits=3, sources={"kind": "test", "n": 1})
    assert isinstance(cap, Capture)
    assert cap.attentions is None and cap.logits is None and cap.raw.k == 3
    assert cap.meta.source == {"kind": "test", "n": 1}
    back = load_capture(cap.save(tmp_path / "forced.safetensors"))
    assert is_forced(back) and torch.equal(back.raw.chosen_logprob, cap.raw.chosen_logprob)
    half = score(byte_tiny, "Hello", " world")
    assert isinstance(half, Capture)
    assert half.attentions is not None and half.attentions.dtype == torch.float16


@pytest.mark.parametrize(
    ("prompt", "continuation", "kwargs", "message"),
    [
        (["a", "b"], [" x"], {}, "2 prompts but 1 continuations"),
        ("a", [" x"], {}, "both as strings or both as lists"),
        ("a", "", {}, "continuation 0 is empty"),
        ("  ", " x", {}, "prompt 0 is empty"),
        ([], [], {}, "no prompts"),
        ("a", " x", {"top_k_logits": 0}, "top_k_logits"),
        ("a", " x", {"attention_dtype": "int8"}, "attention_dtype"),
        ("a", " x", {"sources": [{}, {}]}, "2 sources for 1 items"),
        ("a" * 1000, " x" * 20, {}, "more than the model's 1024-token context"),
        (3, " x", {}, "prompt must be a string"),
    ],
)
def test_bad_input_is_refused_before_model_work(byte_tiny, prompt, continuation, kwargs, message):
    calls = []
    handle = byte_tiny.model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=message):
            score(byte_tiny, prompt, continuation, **kwargs)
    finally:
        handle.remove()
    assert calls == []


@pytest.mark.parametrize("entry", ["model.score", "forced.score"])
@pytest.mark.parametrize(("prompt", "continuation", "what"), [
    ("User: hi\nAgent:", " \ud800", r"continuation 0 \(' \\ud800'\) is not valid text: it holds an unpaired "
                                      r"surrogate '\\ud800' at character 1"),
    (["ok", "User: hi\udcff"], [" a", " b"], r"prompt 1 \('User: hi\\udcff'\) is not valid text: it holds an "
                                             r"unpaired surrogate '\\udcff' at character 8"),
])
def test_an_unpaired_surrogate_is_refused_like_generate_refuses_it(tiny, entry, prompt, continuation, what):
    """The real GPT-2 tokenizer raises its own TypeError on a lone surrogate; every scoring door says instead
    what generate says for the same character, before any model work."""

    with pytest.raises(TypeError):  # what the tokenizer does on its own: the reason for the check
        tiny.tokenizer(" \ud800", add_special_tokens=False)
    with pytest.raises(ValueError, match="prompt 0 .*not valid text: it holds an unpaired surrogate '\\\\ud800'"):
        tiny.generate("\ud800")
    call = {"model.score": lambda: tiny.score(prompt, continuation),
            "forced.score": lambda: score(tiny, prompt, continuation)}[entry]
    calls = []
    handle = tiny.model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=what):
            call()
    finally:
        handle.remove()
    assert calls == []


def test_token_ids_outside_the_vocabulary_are_refused(byte_tiny):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        score_tokens(byte_tiny, [[1, 2]], [[300]])
    with pytest.raises(ValueError, match="continuation 0 has no tokens"):
        score_tokens(byte_tiny, [[1, 2]], [[]])
    with pytest.raises(ValueError, match="list of token id lists"):
        score_tokens(byte_tiny, cast(Any, [1, 2]), cast(Any, [3, 4]))  # deliberately flat lists


ARCHITECTURES: dict[str, dict[str, Any]] = {  # tiny configs over the 257-id byte-level vocabulary (eos/pad 256)
    "llama": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2},
    "qwen2": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2},
    "gpt_neox": {"model_type": "gpt_neox", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4},
    "opt": {"model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "word_embed_proj_dim": 32},
    "gemma": {"model_type": "gemma", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8},
    "gptj": {"model_type": "gptj", "n_embd": 32, "n_layer": 2, "n_head": 4, "rotary_dim": 4},
}


def tiny_architecture(arch: str):
    """An ``InspectorModel`` of ``ARCHITECTURES[arch]``: seeded random weights, eager attention, byte tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from inspector._fallback import builtin_tokenizer
    from inspector._model import InspectorModel

    kw = dict(ARCHITECTURES[arch])
    cfg = AutoConfig.for_model(kw.pop("model_type"), vocab_size=257, bos_token_id=256, eos_token_id=256,
                               pad_token_id=256, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    return InspectorModel.from_model(model, builtin_tokenizer(), name=arch, random_weights=True)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_other_architectures_match_teacher_forced_pass(arch):
    """Position ids and padding handled for rotary, learned-offset (OPT) and grouped-query attention too."""
    im = tiny_architecture(arch)
    assert im.model.config.num_hidden_layers == 2 and im.model.config.num_attention_heads == 4
    caps = score(im, PROMPTS[:2], REPLIES[:2], attention_dtype=torch.float32, keep_logits=True)
    assert isinstance(caps, list)
    assert caps[1].seq_len < caps[0].seq_len  # the second item is left-padded in the batch
    for cap, p, r in zip(caps, PROMPTS, REPLIES[:2], strict=False):
        assert_matches_reference(im, cap, p, r)


def test_model_score_method_and_forced_stop_reason_round_trip(byte_tiny, tmp_path):
    from inspector._store import load_capture, save_capture

    cap = byte_tiny.score(PROMPTS[0], REPLIES[0], attention_dtype=torch.float32)
    assert is_forced(cap) and cap.stop_reason == "forced"
    assert_matches_reference(byte_tiny, cap, PROMPTS[0], REPLIES[0])
    path = save_capture(cap, tmp_path / "forced.safetensors")
    back = load_capture(path)
    assert back.stop_reason == "forced" and is_forced(back)
    assert torch.equal(back.raw.chosen_logprob, cap.raw.chosen_logprob)
