"""Captured attention and logits against independent references (teacher-forced passes, HF's own outputs)."""

from __future__ import annotations

import pytest
import torch

import inspector
import inspector._architectures
import inspector.analysis

PROMPT = "User: hey how are you? \nAgent:"
BATCH = [PROMPT, "Hi", "User: what time does the train leave tomorrow morning?\nAgent:"]


@pytest.fixture(params=[pytest.param("tiny", id="tiny"),
                        pytest.param("gpt2_random", id="full-size", marks=pytest.mark.slow)])
def im(request):
    """Each capture path's exactness on the tiny GPT-2 (real tokenizer); the full-size run of it is ``slow``."""
    return request.getfixturevalue(request.param)


@torch.no_grad()
def reference(im, ids: torch.Tensor):
    """One teacher-forced forward pass over the final sequence: ([layer, head, seq, seq], [seq, vocab])."""
    out = im.model(input_ids=ids[None].to(im.device), output_attentions=True, use_cache=False)
    return torch.stack([a[0] for a in out.attentions]).float().cpu(), out.logits[0].float().cpu()


def assert_matches_reference(im, cap, att_tol=1e-5, logit_tol=1e-4):
    ref_att, ref_logits = reference(im, cap.token_ids)
    p = cap.prompt_len
    assert cap.attentions.shape == ref_att.shape
    assert (cap.attentions.float() - ref_att).abs().max().item() <= att_tol
    rows = ref_logits[p - 1 : -1]  # row i produced generated token i
    assert cap.logits is not None
    assert (cap.logits - rows).abs().max().item() <= logit_tol
    # per-step statistics recomputed independently from the reference logits
    logp = torch.log_softmax(rows.double(), dim=-1)
    chosen = cap.generated_ids
    exp_lp = logp.gather(1, chosen[:, None])[:, 0]
    assert torch.allclose(cap.raw.chosen_logprob.double(), exp_lp, atol=1e-4)
    exp_rank = (logp > exp_lp[:, None]).sum(-1) + 1
    assert torch.equal(cap.raw.chosen_rank, exp_rank)
    exp_ent = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(cap.raw.entropy.double(), exp_ent, atol=1e-4)
    top = logp.topk(cap.raw.k, dim=-1)
    assert torch.allclose(cap.raw.topk_logprobs.double(), top.values, atol=1e-4)
    return rows


def test_tokenizer_matches_shared_readme(tokenizer):
    ids = tokenizer("User: hey how are you? \nAgent:")["input_ids"]
    assert ids == [12982, 25, 17207, 703, 389, 345, 30, 220, 198, 36772, 25]


def test_greedy_matches_teacher_forced(im):
    cap = im.generate(PROMPT, max_new_tokens=12, attention_dtype=torch.float32, keep_logits=True)
    assert isinstance(cap, inspector.Capture)
    assert cap.prompt_len == 11 and cap.num_steps == 12 and cap.stop_reason == "length"
    assert cap.attentions is not None
    assert cap.attentions.shape == (im.num_layers, im.num_heads, 23, 23)
    rows = assert_matches_reference(im, cap)
    # greedy: every chosen token is the argmax of the raw logits
    assert torch.equal(cap.generated_ids, rows.argmax(-1))
    assert bool((cap.raw.chosen_rank == 1).all())
    # nothing processed the scores: processed statistics equal raw ones
    assert torch.equal(cap.processed.chosen_logprob, cap.raw.chosen_logprob)


def test_attention_invariants_default_float16(im):
    cap = im.generate(PROMPT, max_new_tokens=6)
    att = cap.attentions
    assert att.dtype == torch.float16 and cap.logits is None
    seq = cap.seq_len
    upper = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
    assert bool((att[:, :, upper] == 0).all())
    assert torch.allclose(att.float().sum(-1), torch.ones(im.num_layers, im.num_heads, seq), atol=2e-3)


def test_left_padded_batch_equals_each_prompt_alone(im):
    caps = im.generate(BATCH, max_new_tokens=8, attention_dtype=torch.float32, keep_logits=True)
    assert isinstance(caps, list) and len(caps) == 3
    for prompt, cap in zip(BATCH, caps, strict=True):
        assert cap.prompt_text == prompt
        assert cap.token_ids[: cap.prompt_len].tolist() == im.tokenizer(prompt)["input_ids"]
        assert_matches_reference(im, cap)
        alone = im.generate(prompt, max_new_tokens=8, attention_dtype=torch.float32, keep_logits=True)
        assert torch.equal(alone.token_ids, cap.token_ids)
        assert (alone.attentions - cap.attentions).abs().max() <= 1e-5


def test_seeded_sampling_reproducible_and_exact(im):
    kw = dict(max_new_tokens=8, do_sample=True, temperature=0.7, top_k=50, top_p=0.9, seed=1234)
    a = im.generate(BATCH, attention_dtype=torch.float32, keep_logits=True, **kw)
    b = im.generate(BATCH, attention_dtype=torch.float32, keep_logits=True, **kw)
    for ca, cb in zip(a, b, strict=True):
        assert torch.equal(ca.token_ids, cb.token_ids)
        rows = assert_matches_reference(im, ca)
        # processed scores, recomputed by hand: temperature, then top-k 50, then top-p 0.9
        scaled = rows.double() / 0.7
        kth = scaled.topk(50, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        sorted_, idx = scaled.sort(dim=-1, descending=False)
        cum = sorted_.softmax(-1).cumsum(-1)
        remove_sorted = cum <= 1 - 0.9
        remove_sorted[:, -1] = False
        remove = remove_sorted.scatter(1, idx, remove_sorted)
        scaled = scaled.masked_fill(remove, float("-inf"))
        plogp = torch.log_softmax(scaled, dim=-1)
        exp = plogp.gather(1, ca.generated_ids[:, None])[:, 0]
        assert torch.allclose(ca.processed.chosen_logprob.double(), exp, atol=1e-4)
        assert bool(torch.isfinite(ca.processed.chosen_logprob).all())  # never sampled a filtered token
    c = im.generate(BATCH, **{**kw, "seed": 99})
    assert any(not torch.equal(x.token_ids, y.token_ids) for x, y in zip(a, c, strict=True))


def test_beam_search_each_beam_matches_its_own_forward_pass(im):
    caps = im.generate(
        [PROMPT, "Hi"], max_new_tokens=6, num_beams=3, num_return_sequences=3,
        attention_dtype=torch.float32, keep_logits=True,
    )
    assert len(caps) == 6
    for cap in caps:
        assert_matches_reference(im, cap)
    # beams of one prompt differ from each other
    assert len({tuple(c.token_ids.tolist()) for c in caps[:3]}) == 3
    assert [c.meta.sequence_index for c in caps] == [0, 1, 2, 0, 1, 2]


def _boost_eos_after(model, trigger: int, eos: int, amount: float = 40.0):
    """Forward hook: raise the EOS logit at every position whose input token is ``trigger``.

    A function of the sequence alone, so a teacher-forced pass sees the same logits.
    """

    def hook(module, args, kwargs, output):
        ids = kwargs["input_ids"]
        q = output.logits.shape[1]
        hit = (ids[:, -q:] == trigger).to(output.logits.dtype)
        output.logits[:, :, eos] += amount * hit

    return model.register_forward_hook(hook, with_kwargs=True)


def test_beam_search_with_early_eos_tiny(byte_tiny):
    """Beams that end with EOS at different lengths each still match their own forward pass."""
    eos = byte_tiny.tokenizer.eos_token_id
    free = byte_tiny.generate([PROMPT], max_new_tokens=8, num_beams=4, num_return_sequences=4)
    # a token some beam writes at step 2, not at step 0: after it, EOS becomes near-certain
    trigger = next(int(c.generated_ids[2]) for c in free if int(c.generated_ids[2]) != int(c.generated_ids[0]))
    handle = _boost_eos_after(byte_tiny.model, trigger, eos)
    try:
        caps = byte_tiny.generate([PROMPT], max_new_tokens=8, num_beams=4, num_return_sequences=4,
                             attention_dtype=torch.float32, keep_logits=True)
        assert any(c.stop_reason == "eos" for c in caps)
        assert len({c.num_steps for c in caps}) > 1
        for cap in caps:
            assert_matches_reference(byte_tiny, cap)
            assert (cap.stop_reason == "eos") == (int(cap.generated_ids[-1]) == eos)
    finally:
        handle.remove()


def test_eos_in_batch_and_stop_reason(byte_tiny):
    base = byte_tiny.generate(BATCH, max_new_tokens=6)
    eos = int(base[0].generated_ids[2])
    old = byte_tiny.model.config.eos_token_id
    byte_tiny.model.config.eos_token_id = eos
    try:
        caps = byte_tiny.generate(BATCH, max_new_tokens=6, attention_dtype=torch.float32, keep_logits=True)
    finally:
        byte_tiny.model.config.eos_token_id = old
    assert len({c.num_steps for c in caps}) > 1  # rows of one batch stopped at different steps
    for before, cap in zip(base, caps, strict=True):
        free = before.generated_ids.tolist()
        if eos in free:  # stops right after the first EOS it writes
            assert cap.stop_reason == "eos" and cap.num_steps == free.index(eos) + 1
            assert int(cap.generated_ids[-1]) == eos
        else:
            assert cap.stop_reason == "length" and cap.num_steps == 6
        assert_matches_reference(byte_tiny, cap)


def test_stop_strings(tiny):
    """The real GPT-2 tokenizer: stop strings are matched against its BPE vocabulary."""
    free = tiny.generate(PROMPT, max_new_tokens=8)
    target = free.generated_tokens[3]  # a string the model writes at step 3
    stop = target.strip() or target
    first_hit = next(i for i, t in enumerate(free.generated_tokens) if stop in "".join(free.generated_tokens[: i + 1]))
    cap = tiny.generate(PROMPT, max_new_tokens=8, stop_strings=[stop, "\n"], keep_logits=True,
                        attention_dtype=torch.float32)
    assert cap.stop_reason == "stop_string"
    assert cap.num_steps == first_hit + 1
    assert cap.generated_text.endswith(stop)
    assert_matches_reference(tiny, cap)


def test_notebook_stacked_mean_reproduced(byte_tiny):
    """capture.stacked_mean(step) equals torch.stack(output.attentions[step]).mean(dim=0) of the notebook's call."""
    ids = byte_tiny.tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = byte_tiny.model.generate(
            **ids, max_new_tokens=5, do_sample=False, output_logits=True, output_attentions=True,
            return_dict_in_generate=True, use_cache=False, pad_token_id=byte_tiny.tokenizer.eos_token_id,
        )
    cap = byte_tiny.generate(PROMPT, max_new_tokens=5, attention_dtype=torch.float32, keep_logits=True)
    assert torch.equal(out.sequences[0], cap.token_ids)
    for step in range(5):
        notebook = torch.stack(out.attentions[step]).mean(dim=0)[0]  # [head, q, k]
        assert torch.allclose(cap.stacked_mean(step), notebook, atol=1e-6)
        assert torch.allclose(cap.logits[step], out.logits[step][0], atol=1e-5)


def test_hooks_removed_even_after_errors(byte_tiny):
    modules = [m for m, _ in inspector._architectures.find_attention_modules(byte_tiny.model)]

    def counts():
        return [len(m._forward_hooks) for m in modules] + [len(byte_tiny.model._forward_hooks)]

    before = counts()
    byte_tiny.generate(PROMPT, max_new_tokens=2)
    assert counts() == before

    def boom(module, args, output):
        raise RuntimeError("boom")

    h = modules[1].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        byte_tiny.generate(PROMPT, max_new_tokens=2)
    h.remove()
    assert counts() == before


def test_on_step_reports_progress_and_raising_cancels(byte_tiny):
    modules = [m for m, _ in inspector._architectures.find_attention_modules(byte_tiny.model)]
    before = [len(m._forward_hooks) for m in modules]
    seen = []
    cap = byte_tiny.generate(PROMPT, max_new_tokens=6, on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 6) for i in range(1, cap.num_steps + 1)] and cap.num_steps == 6

    class Cancelled(BaseException):  # what Streamlit's rerun request is: not an Exception
        pass

    def cancel_at_3(done, total):
        seen.append(done)
        if done == 3:
            raise Cancelled

    seen.clear()
    with pytest.raises(Cancelled):
        byte_tiny.generate(PROMPT, max_new_tokens=50, on_step=cancel_at_3)
    assert seen == [1, 2, 3]  # stopped at once, no further model work
    assert [len(m._forward_hooks) for m in modules] == before
    again = byte_tiny.generate(PROMPT, max_new_tokens=6)  # the model is left as it was
    assert torch.equal(again.token_ids, cap.token_ids) and torch.equal(again.attentions, cap.attentions)


def test_nan_is_reported_with_step_and_layer():
    from conftest import make_byte_tiny

    im = make_byte_tiny(n_layer=3)
    with torch.no_grad():
        im.model.transformer.h[2].attn.c_attn.weight[0, 0] = float("nan")
    with pytest.raises(inspector.NonFiniteError, match=r"layer 2.*prefill"):
        im.generate(PROMPT, max_new_tokens=3)

    im2 = make_byte_tiny(n_layer=2)
    calls = {"n": 0}

    def nan_logits(module, args, output):  # NaN logits at the third forward (generated step 2)
        calls["n"] += 1
        if calls["n"] == 3:
            output.logits[:, -1, 5] = float("nan")

    h = im2.model.register_forward_hook(nan_logits)
    try:
        with pytest.raises(inspector.NonFiniteError, match="generated step 2"):
            im2.generate(PROMPT, max_new_tokens=4)
    finally:
        h.remove()


def test_aggregations(byte_tiny):
    cap = byte_tiny.generate(PROMPT, max_new_tokens=4, attention_dtype=torch.float32)
    att = cap.attentions
    assert torch.allclose(cap.aggregate("mean", "mean"), att.mean(dim=(0, 1)))
    assert torch.allclose(cap.aggregate("max", None), att.amax(dim=0))
    assert torch.allclose(cap.aggregate(1, 0), att[1, 0])
    assert torch.allclose(inspector.analysis.aggregate_by_mode(att, "stacked-mean"), att.mean(0).mean(0))
    with pytest.raises(ValueError, match="valid layers are 0..1"):
        cap.aggregate(5, "mean")
    with pytest.raises(ValueError, match="unknown"):
        cap.aggregate("median", "mean")
    before = dict(inspector.analysis.REDUCERS)
    cap.aggregate(lambda t, d: t.median(dim=d).values, "mean")
    assert dict(inspector.analysis.REDUCERS) == before


def test_step_entropy_and_topk_against_float64_at_batch_16():
    """The per-step statistics at GPT-2's vocabulary and batch 16, against a float64 computation.

    A batched ``bmm`` entropy was 19x slower at this size and off by 2.4e-4 nats; the dot
    product stays within float32 rounding.
    """
    from inspector._capture.step_stats import entropy_and_topk

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 50257, generator=g) * 3
    logp = torch.log_softmax(logits, dim=-1)
    ent, topv, topi = entropy_and_topk(logp, 10)
    ref_lp = torch.log_softmax(logits.double(), dim=-1)
    ref_ent = -(ref_lp.exp() * ref_lp).sum(-1)
    assert torch.allclose(ent.double(), ref_ent, rtol=0, atol=2e-5)
    ref_v, ref_i = ref_lp.topk(10, dim=-1)
    assert torch.equal(topi, ref_i) and torch.allclose(topv.double(), ref_v, atol=1e-5)
    masked = logp.masked_fill(logits < 2.0, float("-inf"))  # as a top-k / top-p filter leaves it
    m_ent, _, _ = entropy_and_topk(torch.log_softmax(masked, -1), 10, masked=True)
    kept = torch.log_softmax(logits.double().masked_fill(logits < 2.0, float("-inf")), -1)
    ref_m = -(kept.exp() * kept.masked_fill(kept.isinf(), 0)).sum(-1)
    assert torch.allclose(m_ent.double(), ref_m, rtol=0, atol=2e-5)


def test_extra_step_for_the_last_row_skips_the_output_layer(byte_tiny):
    """The step after generate (for the last token's attention row) projects no position onto the vocabulary."""
    seen: list[tuple[int, ...]] = []
    head = byte_tiny.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, args, out: seen.append(tuple(out.shape)))
    try:
        cap = byte_tiny.generate(["User: hi\nAgent:", "Hello"], max_new_tokens=3)
    finally:
        handle.remove()
    vocab = byte_tiny.model.config.vocab_size
    assert seen == [(2, 1, vocab)] * 3 + [(2, 0, vocab)]
    assert cap[0].attentions is not None and cap[0].num_steps == 3


@pytest.mark.parametrize("rows", [1, 16])
def test_step_stats_from_logits_against_float64(rows):
    """row_stats (entropy, log-sum-exp, top-k log-probabilities straight from scores, chunk by chunk) and
    chosen_from_logits against a float64 log-softmax, on raw logits and on filtered (-inf) scores."""
    from inspector._capture.step_stats import chosen_from_logits, row_stats

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(rows, 50257, generator=g) * 4 + 20  # large logits, as trained models give
    for scores, masked in ((logits, False), (logits.masked_fill(logits < 24.0, float("-inf")), True)):
        lse, ent, topv, topi = row_stats(scores, 10, masked=masked)
        ref = torch.log_softmax(scores.double(), dim=-1)
        assert torch.allclose(lse.double(), torch.logsumexp(scores.double(), -1), rtol=0, atol=1e-5)
        assert torch.allclose(ent.double(), -(ref.exp() * ref.masked_fill(ref.isinf(), 0)).sum(-1), rtol=0, atol=3e-5)
        ref_v, ref_i = ref.topk(10, dim=-1)
        assert torch.equal(topi, ref_i) and torch.allclose(topv.double(), ref_v, rtol=0, atol=1e-5)
        ids = torch.stack([ref_i[:, 3], ref_i[:, 0]], dim=1)[:, rows % 2]  # some rank-4 or best tokens
        lp, rank = chosen_from_logits(scores, lse, ids)
        assert torch.allclose(lp.double(), ref.gather(-1, ids[:, None])[:, 0], rtol=0, atol=1e-5)
        assert torch.equal(rank, (ref > ref.gather(-1, ids[:, None])).sum(-1) + 1)
    bad = logits.clone()
    bad[0, 7] = float("nan")
    assert torch.isnan(row_stats(bad, 10)[1][0]) and (rows == 1 or torch.isfinite(row_stats(bad, 10)[1][1:]).all())
