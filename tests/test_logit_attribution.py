"""Direct logit attribution: the parts add up to the model's own logits on every tested architecture.

References are independent of the code under test: the model's own forward logits over the final sequence
(Gemma 2's with its soft-cap switched off, as the parts add up to the logit before the cap), the capture's
stored log-probabilities and logits, and on a tiny GPT-2 one head of the last layer worked out by hand from
the weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from conftest import make_byte_tiny
from test_architectures import ARCHS, BY_NAME, LONG, SHORT, build
from transformers import GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

import inspector
from inspector._architectures import TESTED_MODEL_TYPES
from inspector._records.steps import TokenScores
from inspector.analysis import logit_attribution as exported
from inspector.analysis.direct_logit import LogitAttribution, logit_attribution

SUM_TOL = 1e-3
_MODELS: dict[str, inspector.InspectorModel] = {}


def _model(name: str) -> inspector.InspectorModel:
    if name not in _MODELS:
        _MODELS[name] = make_byte_tiny(n_layer=2, n_head=4) if name == "gpt2" else build(BY_NAME[name])
    return _MODELS[name]


@contextmanager
def _uncapped(im: inspector.InspectorModel) -> Iterator[None]:
    """The model's forward without Gemma 2's final logit soft-cap (a no-op for other models)."""
    config = im.model.config
    cap = getattr(config, "final_logit_softcapping", None)
    config.final_logit_softcapping = None
    try:
        yield
    finally:
        config.final_logit_softcapping = cap


@torch.no_grad()
def _reference_logits(im: inspector.InspectorModel, cap: inspector.Capture) -> torch.Tensor:
    """``[step, vocab]``: the model's own logits before each generated token, soft-cap off."""
    with _uncapped(im):
        logits = im.model(input_ids=cap.token_ids[None], use_cache=False).logits[0].float()
    return logits[cap.prompt_len - 1:-1]


def test_every_tested_architecture_is_covered():
    assert {a.name for a in ARCHS} | {"gpt2"} == set(TESTED_MODEL_TYPES)
    assert exported is logit_attribution


@pytest.mark.parametrize("name", TESTED_MODEL_TYPES)
def test_parts_sum_to_the_models_logit_and_margin(name):
    im = _model(name)
    cap = im.generate(LONG, max_new_tokens=6, keep_logits=True)
    ref = _reference_logits(im, cap)
    chosen = cap.generated_ids
    want = ref.gather(1, chosen[:, None])[:, 0]
    att = logit_attribution(cap, im)
    assert isinstance(att, LogitAttribution) and att.target == "chosen"
    assert att.parts.dtype == torch.float32 and att.parts.shape == (cap.num_steps, len(att.names))
    torch.testing.assert_close(att.total, want, atol=SUM_TOL, rtol=0)
    torch.testing.assert_close(att.parts.sum(1), want, atol=SUM_TOL, rtol=0)
    # the teacher-forced pass sees what generation saw
    torch.testing.assert_close(att.chosen_logprob, cap.raw.chosen_logprob, atol=1e-4, rtol=0)
    assert cap.logits is not None
    stored = cap.logits.float().gather(1, chosen[:, None])[:, 0]
    if name == "gemma2":  # the capture keeps the capped logits
        c = float(im.model.config.final_logit_softcapping)
        stored_from_total = torch.tanh(att.total / c) * c
        torch.testing.assert_close(stored_from_total, stored, atol=1e-4, rtol=0)
    else:
        torch.testing.assert_close(att.total, stored, atol=1e-4, rtol=0)
    others = ref.scatter(1, chosen[:, None], float("-inf"))
    runner = others.argmax(1)
    margin = logit_attribution(cap, im, target="margin")
    assert torch.equal(margin.runner_up_ids, runner) and torch.equal(margin.token_ids, chosen)
    torch.testing.assert_close(margin.parts.sum(1), want - others.max(1).values, atol=SUM_TOL, rtol=0)
    heads = im.model.config.num_attention_heads if hasattr(im.model.config, "num_attention_heads") else 4
    assert sum(n.startswith("L1.H") for n in att.names) == heads == 4
    assert ("pos" in att.names) == (name in ("gpt2", "opt"))
    assert ("L0.attn.bias" in att.names) == (name in ("gpt2", "gpt_neox", "opt", "bloom"))
    assert ("final_norm.bias" in att.names) == (name in ("gpt2", "gpt_neox", "opt", "gptj", "falcon", "bloom"))
    assert ("unembed.bias" in att.names) == (name == "gptj")


def test_a_last_layer_head_by_hand_on_gpt2():
    im = _model("gpt2")
    model = im.model
    assert isinstance(model, GPT2LMHeadModel)
    cap = im.generate(SHORT, max_new_tokens=5)
    att = logit_attribution(cap, im)
    ids = cap.token_ids[:-1][None]
    seen: dict[str, torch.Tensor] = {}
    handle = model.transformer.ln_f.register_forward_pre_hook(lambda _m, a: seen.update(final=a[0].detach()))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
    finally:
        handle.remove()
    last = model.transformer.h[-1]
    assert isinstance(last, GPT2Block)
    n_head, width = 4, model.config.n_embd
    dh = width // n_head
    with torch.no_grad():
        x = last.ln_1(out.hidden_states[-2][0])  # [seq, width], the last layer's attention input
        q, k, v = (x @ last.attn.c_attn.weight + last.attn.c_attn.bias).split(width, dim=-1)
        seq = x.shape[0]
        causal = torch.ones(seq, seq).tril().bool()
        ln_f, unembed = model.transformer.ln_f, model.lm_head.weight
        final = seen["final"][0]
        std = torch.sqrt(final.var(-1, unbiased=False) + ln_f.eps)
        for head in range(n_head):
            sl = slice(head * dh, (head + 1) * dh)
            scores = (q[:, sl] @ k[:, sl].T / math.sqrt(dh)).masked_fill(~causal, float("-inf"))
            z = scores.softmax(-1) @ v[:, sl]  # [seq, dh]
            written = z @ last.attn.c_proj.weight[sl]  # Conv1D: [in, out]
            centred = written - written.mean(-1, keepdim=True)
            term = (centred / std[:, None] * ln_f.weight) @ unembed.T  # [seq, vocab]
            rows = term[cap.prompt_len - 1:]
            want = rows.gather(1, cap.generated_ids[:, None])[:, 0]
            torch.testing.assert_close(att.parts[:, att.names.index(f"L1.H{head}")], want, atol=1e-5, rtol=0)


def test_a_batch_equals_one_by_one():
    im = _model("llama")
    caps = [im.generate(SHORT, max_new_tokens=3), im.generate(LONG, max_new_tokens=7),
            im.generate("Hi", max_new_tokens=5)]
    together = logit_attribution(caps, im, target="margin")
    assert isinstance(together, list) and len(together) == 3
    for cap, got in zip(caps, together, strict=True):
        alone = logit_attribution(cap, im, target="margin")
        assert got.names == alone.names and torch.equal(got.token_ids, alone.token_ids)
        assert got.parts.shape == (cap.num_steps, len(alone.names))
        torch.testing.assert_close(got.parts, alone.parts, atol=1e-4, rtol=0)
        torch.testing.assert_close(got.total, alone.total, atol=1e-4, rtol=0)


@pytest.mark.parametrize("options", [dict(do_sample=True, seed=3, temperature=1.5),
                                     dict(num_beams=3, num_return_sequences=2)], ids=["sampled", "beams"])
def test_sampled_and_beam_captures(options):
    im = _model("gpt2")
    caps = im.generate([LONG], max_new_tokens=6, **options)
    assert isinstance(caps, list) and len(caps) == options.get("num_return_sequences", 1)
    for cap, att in zip(caps, logit_attribution(caps, im), strict=True):
        want = _reference_logits(im, cap).gather(1, cap.generated_ids[:, None])[:, 0]
        torch.testing.assert_close(att.parts.sum(1), want, atol=SUM_TOL, rtol=0)


def test_top_lists_the_largest_parts():
    att = LogitAttribution(parts=torch.tensor([[0.5, -3.0, 1.0]]), names=["embed", "L0.H0", "L0.mlp"],
                           total=torch.tensor([-1.5]), token_ids=torch.tensor([1]), runner_up_ids=torch.tensor([2]),
                           chosen_logprob=torch.tensor([-1.0]), target="chosen")
    assert att.top(0, 2) == [("L0.H0", -3.0), ("L0.mlp", 1.0)]
    with pytest.raises(ValueError, match="steps 0-0"):
        att.top(1)


@contextmanager
def _no_model_work(im: inspector.InspectorModel) -> Iterator[None]:
    def refuse(*_args: Any) -> None:
        raise AssertionError("the model ran before the input was checked")

    handle = im.model.register_forward_pre_hook(refuse)
    try:
        yield
    finally:
        handle.remove()


def _empty(cap: inspector.Capture) -> inspector.Capture:
    def none(scores: TokenScores) -> TokenScores:
        return TokenScores(*(getattr(scores, f.name)[:0] for f in dataclasses.fields(scores)))

    return dataclasses.replace(cap, token_ids=cap.token_ids[:cap.prompt_len], tokens=cap.tokens[:cap.prompt_len],
                               raw=none(cap.raw), processed=none(cap.processed), attentions=None, logits=None,
                               hidden_states=None, value_norms=None, lens=None, step_attentions=None)


def test_refusals_come_before_model_work(tiny):
    im = _model("gpt2")
    cap = im.generate(SHORT, max_new_tokens=3)
    with _no_model_work(im):
        with pytest.raises(ValueError, match=r"target must be one of \('chosen', 'margin'\)"):
            logit_attribution(cap, im, target="logit")
        with pytest.raises(ValueError, match="generated no tokens"):
            logit_attribution(_empty(cap), im)
        with pytest.raises(ValueError, match="no captures given"):
            logit_attribution([], im)
        other_vocab = tiny.generate("Hello there", max_new_tokens=3)
        with pytest.raises(ValueError, match="vocabulary has 257"):
            logit_attribution(other_vocab, im)
        deeper = make_byte_tiny(n_layer=3, n_head=4).generate(SHORT, max_new_tokens=3)
        with pytest.raises(ValueError, match="attention for 3 layers, the model has 2"):
            logit_attribution(deeper, im)


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_a_capture_of_other_weights_is_refused():
    cap = make_byte_tiny(n_layer=2, n_head=4, seed=5).generate(LONG, max_new_tokens=4)
    model = _model("gpt2").model
    before = _hooks(model)  # transformers keeps hooks of its own once attention has been recorded
    with pytest.raises(ValueError, match="not from this model.*nats"):
        logit_attribution(cap, _model("gpt2"))
    assert _hooks(model) == before  # removed, also after a refusal that came after the forward pass


def _chat(tokenizer: Any, text: str) -> str:
    return str(tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True))


@pytest.mark.slow
def test_parts_sum_to_the_logit_on_a_real_chat_reply(smollm2):
    cap = smollm2.generate(_chat(smollm2.tokenizer, "What is the capital of France?"), max_new_tokens=8,
                           keep_logits=True)
    with torch.no_grad():
        ref = smollm2.model(input_ids=cap.token_ids[None], use_cache=False).logits[0, cap.prompt_len - 1:-1].float()
    want = ref.gather(1, cap.generated_ids[:, None])[:, 0]
    for target in ("chosen", "margin"):
        att = logit_attribution(cap, smollm2, target=target)
        assert sum(n.startswith("L0.H") for n in att.names) == 9  # query heads of grouped-query attention
        top2 = ref.scatter(1, cap.generated_ids[:, None], float("-inf")).max(1).values
        torch.testing.assert_close(att.parts.sum(1), want - (top2 if target == "margin" else 0), atol=SUM_TOL,
                                   rtol=0)


@pytest.mark.slow
def test_the_top_induction_heads_write_the_repeated_token(smollm2):
    """On 40 random words said twice, the heads that head statistics rank first for induction raise the logit
    of the repeated word directly on the second copy, and not on the first (where nothing repeats).

    Not every high-induction head does: in this model the layer-18 ones write the token directly, the
    layer-17 ones barely (their effect goes through later layers), so the claim is about the top head and
    the top four together.
    """
    import random

    from test_smollm2_circuits import NUM_WORDS, SEED, WORDS

    from inspector.analysis import capture_head_stats, rank_heads

    words = random.Random(SEED).sample(WORDS, NUM_WORDS)
    copy = " " + " ".join(words)
    n = len(smollm2.tokenizer(copy, add_special_tokens=False)["input_ids"])
    cap = smollm2.score("Words:", copy + copy, attention_dtype=torch.float32)
    assert cap.num_steps == 2 * n
    top = rank_heads(capture_head_stats(cap), "induction", top=4)["name"].tolist()
    att = logit_attribution(cap, smollm2)
    cols = [att.names.index(h) for h in top]
    second, first = att.parts[n + 1:2 * n][:, cols], att.parts[1:n][:, cols]  # steps of each copy but its first
    assert float(second[:, 0].mean()) > 0.1 and float((second[:, 0] > 0).float().mean()) > 0.6
    assert float(second.sum(1).mean()) > 0.2 > 0.05 > abs(float(first.sum(1).mean()))
