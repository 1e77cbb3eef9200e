"""Sampling uses exactly the filters of the settings: no library default (top-k 50, ...) is left implicit.

The reference is a decoding chain written here by hand (temperature, then top-k, then top-p) applied
to the captured raw logits, and a seeded ``torch.multinomial`` over it: ``generate`` draws from
``softmax(processed scores)`` with one ``multinomial`` call per step, so the same seed must give the
same tokens when, and only when, the scores it sampled from are the hand-written ones.
"""

from __future__ import annotations

import math

import pytest
import torch

PROMPT = "User: hey how are you? \nAgent:"


def hand_chain(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float) -> torch.Tensor:
    """Processed scores ``[step, vocab]`` from raw logits ``[step, vocab]``: temperature, top-k, top-p.

    Top-p keeps the most likely tokens while the mass of the tokens ranked above them is below
    ``top_p`` (so at least one token is kept); ties at the top-k threshold are all kept.
    """
    scores = logits.float().clone()
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(top_k, scores.shape[-1])
        kth = scores.sort(dim=-1, descending=True).values[:, k - 1 : k]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        probs = torch.softmax(scores.double(), dim=-1)
        order = probs.argsort(dim=-1, descending=True)
        mass_above = probs.gather(-1, order).cumsum(-1) - probs.gather(-1, order)
        keep_sorted = mass_above < top_p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        scores = scores.masked_fill(~keep, float("-inf"))
    return scores


def replay_samples(processed: torch.Tensor, seed: int) -> list[int]:
    """The tokens a seeded sampler draws, one ``multinomial`` per step, from processed scores ``[step, vocab]``."""
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for row in processed:
            out.append(int(torch.multinomial(torch.softmax(row[None], dim=-1), 1)))
    return out


def sample(im, seed=0, max_new_tokens=40, **kw):
    return im.generate(PROMPT, max_new_tokens=max_new_tokens, do_sample=True, seed=seed, keep_logits=True, **kw)


def test_byte_tiny_is_near_uniform(byte_tiny):
    """The premise of the rank tests below: the random byte-level model spreads mass over all 257 tokens."""
    cap = byte_tiny.generate(PROMPT, max_new_tokens=5)
    assert float(cap.raw.entropy.min()) > math.log(257) - 0.05


@pytest.mark.parametrize("top_k", [None, 0])
def test_top_k_off_samples_beyond_rank_50(byte_tiny, top_k):
    cap = sample(byte_tiny, top_k=top_k)
    # near-uniform over 257 tokens: 40 draws all within the top 50 has probability about (50/257)**40
    assert int(cap.raw.chosen_rank.max()) > 50
    assert float(cap.processed.entropy.min()) > math.log(257) - 0.05  # nothing was filtered


def test_top_k_100_filters_at_100_not_50(byte_tiny):
    cap = sample(byte_tiny, top_k=100)
    assert float(cap.processed.entropy.max()) <= math.log(100) + 1e-5
    assert int(cap.processed.chosen_rank.max()) <= 100
    assert int(cap.raw.chosen_rank.max()) <= 100
    assert int(cap.raw.chosen_rank.max()) > 50  # ranks 51..100 hold about half the kept mass


@pytest.mark.slow
def test_full_size_random_gpt2_samples_beyond_rank_50(gpt2_random):
    """Full-size random GPT-2, seed 0, 40 tokens, top-k off: samples beyond rank 50 (no hidden top-50)."""
    cap = gpt2_random.generate(PROMPT, max_new_tokens=40, do_sample=True, seed=0, keep_attention=False)
    assert int(cap.raw.chosen_rank.max()) > 50
    assert float(cap.processed.entropy.min()) > math.log(50) + 1


@pytest.mark.parametrize("top_k", [None, 0, 1, 5, 100, 300])
@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.9)])
def test_processed_scores_and_samples_follow_the_hand_written_chain(byte_tiny, top_k, temperature, top_p):
    cap = sample(byte_tiny, seed=7, max_new_tokens=24, top_k=top_k, temperature=temperature, top_p=top_p)
    gen = cap.meta.generation  # the metadata must record what was really used
    assert (gen["do_sample"], gen["top_k"], gen["temperature"], gen["top_p"]) == (True, top_k, temperature, top_p)
    expected = hand_chain(cap.logits, gen["temperature"], gen["top_k"], gen["top_p"])
    assert replay_samples(expected, seed=gen["seed"]) == cap.generated_ids.tolist()

    logp = torch.log_softmax(expected.double(), dim=-1)
    p = logp.exp()
    entropy = -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)
    assert torch.allclose(cap.processed.entropy.double(), entropy, atol=1e-4)
    chosen = logp.gather(1, cap.generated_ids[:, None])[:, 0]
    assert torch.allclose(cap.processed.chosen_logprob.double(), chosen, atol=1e-4)
    assert torch.equal(cap.processed.chosen_rank, (logp > chosen[:, None]).sum(-1) + 1)
    k = cap.processed.k
    top = logp.sort(dim=-1, descending=True).values[:, :k]
    assert torch.allclose(cap.processed.topk_logprobs.double(), top, atol=1e-4)
    kept = torch.isfinite(expected).sum(-1)
    if top_k:
        assert int(kept.max()) <= top_k


def test_the_model_generation_config_does_not_leak_in():
    """A model's own generation_config (as a chat checkpoint ships one) changes nothing: the settings rule."""
    from conftest import make_byte_tiny

    im = make_byte_tiny()
    greedy_before = im.generate(PROMPT, max_new_tokens=12, keep_logits=True)
    cfg = im.model.generation_config
    cfg.do_sample, cfg.top_k, cfg.top_p, cfg.temperature, cfg.typical_p = True, 3, 0.5, 0.05, 0.5
    cfg.epsilon_cutoff, cfg.eta_cutoff = 0.01, 0.01
    cfg.repetition_penalty, cfg.no_repeat_ngram_size, cfg.min_length = 3.0, 1, 30

    greedy = im.generate(PROMPT, max_new_tokens=12, keep_logits=True)
    assert torch.equal(greedy.token_ids, greedy_before.token_ids)
    assert torch.equal(greedy.generated_ids, greedy.logits.argmax(-1))
    cap = sample(im, seed=3)
    assert replay_samples(hand_chain(cap.logits, 1.0, None, 1.0), seed=3) == cap.generated_ids.tolist()
    assert int(cap.raw.chosen_rank.max()) > 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_p", 0.2), ("suppress_tokens", [5]), ("bad_words_ids", [[5]]), ("forced_eos_token_id", 5),
     ("sequence_bias", {(5,): 1.0}), ("max_time", 10.0), ("min_new_tokens", 30)],
)
def test_a_model_generation_config_filter_that_cannot_be_switched_off_is_refused(field, value):
    from conftest import make_byte_tiny

    im = make_byte_tiny()
    setattr(im.model.generation_config, field, value)
    calls = {"n": 0}
    im.model.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    with pytest.raises(ValueError, match=rf"generation_config sets {field}"):
        im.generate(PROMPT, max_new_tokens=3, do_sample=True, seed=0)
    assert calls["n"] == 0


@pytest.mark.parametrize(
    "settings",
    [{}, {"do_sample": True}, {"do_sample": True, "top_k": 0, "top_p": 1.0}, {"num_beams": 3}],
    ids=["greedy", "sample", "sample-off", "beam"],
)
def test_generate_builds_no_processor_of_its_own(byte_tiny, settings):
    """With repetition_penalty 1.0, transformers adds no processor or warper: only ours run.

    Uses transformers' private ``_prepare_generation_config``/``_get_logits_processor`` on purpose:
    a new library default that adds a filter should fail here, by name.
    """
    from transformers import LogitsProcessorList

    from inspector import GenerationSettings

    model = byte_tiny.model
    config = GenerationSettings(**settings).generation_config(model, byte_tiny.tokenizer)
    prepared, _ = model._prepare_generation_config(config)
    built = model._get_logits_processor(prepared, input_ids_seq_length=4, logits_processor=LogitsProcessorList())
    assert [type(p).__name__ for p in built] == []
