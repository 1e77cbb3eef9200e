"""Comparing what two runs decoded from (processed distributions), their settings, interventions and causal
tracing's restored fraction: hand-built captures with known distributions, and a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from inspector._records.capture import Capture, CaptureMeta, TokenScores
from inspector.analysis.compare import compare_captures
from inspector.analysis.tracing import restored_fraction

GREEDY = {"do_sample": False, "temperature": 1.0, "top_k": None, "top_p": 1.0, "num_beams": 1,
          "repetition_penalty": 1.0, "max_new_tokens": 2}
LOGITS = [[0.0, 1.0, 2.0, 0.5], [1.0, 0.0, 0.0, 3.0]]


def _scores(logp: torch.Tensor, chosen: torch.Tensor, k: int) -> TokenScores:
    top_lp, top_ids = logp.topk(k, -1)
    p = logp.exp()
    return TokenScores(
        entropy=-torch.where(p > 0, p * logp, 0.0).sum(-1),
        chosen_logprob=logp.gather(1, chosen[:, None])[:, 0],
        chosen_rank=(logp > logp.gather(1, chosen[:, None])).sum(-1) + 1,
        topk_ids=top_ids, topk_logprobs=top_lp,
    )


def _capture(ids, logits, processed_logp=None, generation=None, k=3, extra=None) -> Capture:
    """Prompt ``ids[:2]``; raw scores from ``logits`` ``[step, vocab]``, processed from ``processed_logp``."""
    ids = torch.tensor(ids)
    logits = torch.tensor(logits, dtype=torch.float32)
    raw_logp = torch.log_softmax(logits, -1)
    chosen = ids[2:]
    proc = raw_logp if processed_logp is None else processed_logp
    meta = CaptureMeta(generation=dict(generation or GREEDY), extra=dict(extra or {}))
    return Capture(token_ids=ids, tokens=[str(int(i)) for i in ids], prompt_len=2, prompt_text="",
                   generated_text="", stop_reason="length", raw=_scores(raw_logp, chosen, k),
                   processed=_scores(proc, chosen, k), logits=logits, meta=meta)


def _probs(row):
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row]


def _kl(p, q) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def test_two_decodings_of_one_prompt_differ_in_what_they_decoded_from():
    """Greedy against sampling at temperature 2 on the same logits: the raw KL is 0, the processed one is
    KL(softmax(l) || softmax(l / 2)), computed here by hand."""
    hot = {**GREEDY, "do_sample": True, "temperature": 2.0}
    a = _capture([0, 1, 2, 3], LOGITS)
    b = _capture([0, 1, 2, 3], LOGITS, torch.log_softmax(torch.tensor(LOGITS) / 2.0, -1), hot)
    c = compare_captures(a, b)
    assert c.distributions == "processed" and c.kl_method == "exact"
    expected = [_kl(_probs(r), _probs([v / 2.0 for v in r])) for r in LOGITS]
    torch.testing.assert_close(c.kl.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=1e-5)
    assert min(expected) > 0.05
    raw = compare_captures(a, b, distributions="raw")
    torch.testing.assert_close(raw.kl, torch.zeros(2), atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="distributions must be"):
        compare_captures(a, b, distributions="sampled")


def test_processed_topk_filter_uses_the_bound_with_a_tail_bucket_by_hand():
    """b samples with top_k=2: its processed distribution is softmax over the two best tokens, the rest -inf
    (stored as -inf in its top-3 list). Not rebuildable from the logits alone: the top-k bound is used."""
    filt = {**GREEDY, "do_sample": True, "top_k": 2}
    raw = torch.tensor(LOGITS)
    kept = torch.full_like(raw, -math.inf).scatter(1, raw.topk(2, -1).indices, raw.topk(2, -1).values)
    a = _capture([0, 1, 2, 3], LOGITS)
    b = _capture([0, 1, 2, 3], LOGITS, torch.log_softmax(kept, -1), filt)
    ba = compare_captures(b, a)
    assert ba.kl_method == "topk-bound"
    for s, row in enumerate(LOGITS):
        pa = _probs(row)
        top2 = sorted(range(4), key=lambda i: -row[i])[:2]
        z = sum(pa[i] for i in top2)
        # b's mass lies on its two kept tokens, both in a's top-3 list; the tail bucket of b is empty.
        by_hand = sum(pa[i] / z * math.log((pa[i] / z) / pa[i]) for i in top2)
        assert float(ba.kl[s]) == pytest.approx(by_hand, rel=1e-5)
    # a could pick tokens b's filter removed: the true KL(a || b) is infinite; the bound is large, never NaN
    # (b's -inf entries carry no mass), and infinite where a removed token is in both lists.
    ab = compare_captures(a, b).kl
    assert not bool(ab.isnan().any()) and bool((ab > 1.0).all())
    # The model distributions are the same.
    torch.testing.assert_close(compare_captures(b, a, distributions="raw").kl, torch.zeros(2), atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="distributions='raw'"):
        compare_captures(b, a, kl="exact")


def test_settings_interventions_and_first_divergence_in_words():
    hot = {**GREEDY, "do_sample": True, "temperature": 2.0}
    a = _capture([0, 1, 2, 3], LOGITS)
    b = _capture([0, 1, 2, 0], LOGITS, torch.log_softmax(torch.tensor(LOGITS) / 2.0, -1), hot,
                 extra={"ablate": ["L0.H1", "L1.mlp"], "ablate_mode": "zero"})
    c = compare_captures(a, b)
    assert c.setting_differences == (("generation.do_sample", False, True), ("generation.temperature", 1.0, 2.0))
    assert c.warnings == ["settings differ: generation.do_sample False (A) vs True (B)",
                          "settings differ: generation.temperature 1.0 (A) vs 2.0 (B)"]
    assert c.interventions == ("", "ablated: L0.H1, L1.mlp (zero)")
    assert c.first_divergent_step == 1 and c.first_divergent_tokens == (3, 0)
    # argmax of row 0 is 2 in both, of row 1 is 3 in both (temperature keeps the order)
    assert c.top1_agree.tolist() == [True, True] and c.agreement == 1.0
    text = c.describe()
    assert c.first_divergent_labels == ("3", "0")  # the hand captures' display strings are the ids
    assert "processed distributions" in text and "first divergent token: step 1, A 3 ('3') vs B 0 ('0')" in text
    assert "B ablated: L0.H1, L1.mlp (zero)" in text
    assert "warning: settings differ: generation.temperature 1.0 (A) vs 2.0 (B)" in text
    same = compare_captures(a, a)
    assert same.setting_differences == () and same.warnings == [] and same.first_divergent_tokens is None
    assert "first divergent token: none" in same.describe()


def _forced(chosen_logprob, ids=(0, 1, 2, 3, 1)) -> Capture:
    lp = torch.tensor(chosen_logprob, dtype=torch.float32)
    n = lp.numel()
    scores = TokenScores(entropy=torch.zeros(n), chosen_logprob=lp, chosen_rank=torch.ones(n, dtype=torch.long),
                         topk_ids=torch.tensor(ids[2:])[:, None], topk_logprobs=lp[:, None])
    t = torch.tensor(ids)
    return Capture(token_ids=t, tokens=[str(i) for i in ids], prompt_len=2, prompt_text="", generated_text="",
                   stop_reason="forced", raw=scores, processed=scores)


def test_restored_fraction_by_hand():
    clean, corrupt, patched = _forced([-1.0, -2.0, -0.5]), _forced([-3.0, -2.0, -4.0]), _forced([-2.0, -2.0, -1.0])
    r = restored_fraction(clean, corrupt, patched)
    assert float(r.per_token[0]) == pytest.approx((-2 + 3) / (-1 + 3))
    assert math.isnan(float(r.per_token[1]))  # the corruption did not move this token
    assert float(r.per_token[2]) == pytest.approx((-1 + 4) / (-0.5 + 4))
    assert r.total == pytest.approx((-5.0 + 9.0) / (-3.5 + 9.0))
    with pytest.raises(ValueError, match="teacher-force the clean continuation"):
        restored_fraction(clean, _forced([-1.0, -1.0, -1.0], ids=(0, 1, 2, 3, 2)), patched)


def test_restored_fraction_on_teacher_forced_tiny_model(byte_tiny):
    """Clean and corrupted prompts, one forced continuation: restoring everything (the clean run itself)
    gives 1, restoring nothing (the corrupted run) 0, token by token, where the corruption moved a token."""
    from inspector._capture.forced import score

    clean = score(byte_tiny, "The cat sat on", " the mat", keep_attention=False)
    corrupt = score(byte_tiny, "A dog ran into", " the mat", keep_attention=False)
    assert isinstance(clean, Capture) and isinstance(corrupt, Capture)
    moved = (clean.raw.chosen_logprob - corrupt.raw.chosen_logprob).abs() > 1e-4
    assert bool(moved.any())
    full, none = restored_fraction(clean, corrupt, clean), restored_fraction(clean, corrupt, corrupt)
    torch.testing.assert_close(full.per_token[moved], torch.ones(int(moved.sum()), dtype=torch.float64))
    torch.testing.assert_close(none.per_token[moved], torch.zeros(int(moved.sum()), dtype=torch.float64))
    assert full.total == pytest.approx(1.0) and none.total == pytest.approx(0.0, abs=1e-12)


def test_recorded_interventions_in_words():
    """The record an ablating or patching generate stores in ``meta.interventions`` reads as words."""
    a = _capture([0, 1, 2, 3], LOGITS)
    b = _capture([0, 1, 2, 3], LOGITS)
    b.meta.interventions = {"ablate": ["L1.H0"], "ablate_mode": "mean", "patch": [[2, 5], [3, 5]],
                            "patch_source": {"path": None, "prompt_text": "The cat"}}
    c = compare_captures(a, b)
    expected = "ablated: L1.H0 (mean); patched: layer 2 at position 5, layer 3 at position 5 from 'The cat'"
    assert c.interventions == ("", expected)
    assert f"B {expected}" in c.describe()


def test_run_comparison_table_keeps_small_differences_and_their_signs():
    """``inspector compare`` printed ``0.0000 -0.0000`` for differences of probabilities near 1/vocab."""
    import pandas as pd

    from inspector.cli.research import table_text

    table = pd.DataFrame({"column": ["chosen_prob_mean", "entropy_mean", "n_same"],
                          "mean_diff": [2.1e-05, -3e-07, -0.0], "n": [8, 8, 8]})
    lines = table_text(table).splitlines()
    assert lines[1].split() == ["chosen_prob_mean", "2.10e-05", "8"]
    assert lines[2].split() == ["entropy_mean", "-3.00e-07", "8"]
    assert lines[3].split() == ["n_same", "0", "8"]  # -0.0 has no sign worth printing


def test_run_setting_differences_from_run_json():
    from inspector.analysis.compare import run_setting_differences, setting_warnings

    a = {"model": {"name": "gpt2", "dtype": "float32", "device": "cpu"}, "generation": {**GREEDY, "stop_strings": []},
         "prompt": {"context_turns": 3, "template": {"name": "notebook"}}}
    b = {"model": {"name": "gpt2", "dtype": "float32", "device": "cuda:0"},
         "generation": {**GREEDY, "do_sample": True, "stop_strings": [], "keep_logits": True},
         "prompt": {"context_turns": 3, "template": {"name": "chat"}}}
    diffs = run_setting_differences(a, b)
    # the device and what is recorded (keep_logits) do not change what is decoded: not listed
    assert diffs == (("generation.do_sample", False, True), ("prompt.template", {"name": "notebook"}, {"name": "chat"}))
    assert setting_warnings(diffs)[0] == "settings differ: generation.do_sample False (A) vs True (B)"


def test_base_against_ablated_run_by_a_hand_written_hook(byte_tiny):
    """``compare_captures(base, ablated)``: per-step KL and top-1 agreement against forward passes of the same
    tokens, the ablated one with head 1 of layer 0 zeroed by a hook written here (its slice of ``c_proj``'s
    input), and the intervention named."""
    prompt = "Hello, how are"
    base = byte_tiny.generate(prompt, max_new_tokens=6, keep_logits=True, keep_attention=False)
    ablated = byte_tiny.generate(prompt, max_new_tokens=6, keep_logits=True, keep_attention=False,
                                 ablate=["L0.H1"])
    c = compare_captures(base, ablated)
    assert c.interventions == ("", "ablated: L0.H1 (zero)") and c.kl_method == "exact"
    model = byte_tiny.model
    dh = model.config.n_embd // model.config.n_head

    def zero_head(_module, args):
        z = args[0].clone()
        z[..., dh:2 * dh] = 0.0
        return (z,)

    with torch.no_grad():
        ref_a = model(base.token_ids[None]).logits[0].double()
        handle = model.transformer.h[0].attn.c_proj.register_forward_pre_hook(zero_head)
        try:
            ref_b = model(ablated.token_ids[None]).logits[0].double()
        finally:
            handle.remove()
    la = ref_a[base.prompt_len - 1 + c.steps_a]
    lb = ref_b[ablated.prompt_len - 1 + c.steps_b]
    pa, pb = torch.log_softmax(la, -1), torch.log_softmax(lb, -1)
    torch.testing.assert_close(c.kl.double(), (pa.exp() * (pa - pb)).sum(-1), atol=1e-8, rtol=1e-3)
    assert c.top1_agree.tolist() == (la.argmax(-1) == lb.argmax(-1)).tolist()
    assert c.agreement == pytest.approx(float((la.argmax(-1) == lb.argmax(-1)).double().mean()))
    assert bool((c.kl > 0).all())  # the ablation moved every step's distribution
    differ = (base.generated_ids[: c.num_steps] != ablated.generated_ids[: c.num_steps]).nonzero()
    assert c.first_divergent_step == (int(differ[0, 0]) if differ.numel() else None)


def test_infinite_kl_in_the_figure_is_explained():
    """KL(a || b) is infinite where b's top-k filter removed a token a could pick (both in the stored lists)."""
    from inspector.plots import make_figure

    filt = {**GREEDY, "do_sample": True, "top_k": 1}
    raw = torch.tensor(LOGITS)
    kept = torch.full_like(raw, -math.inf).scatter(1, raw.argmax(-1, keepdim=True), raw.max(-1, keepdim=True).values)
    a = _capture([0, 1, 2, 3], LOGITS, k=4)
    b = _capture([0, 1, 2, 3], LOGITS, torch.log_softmax(kept, -1), filt, k=4)  # b's list holds the -inf tokens
    c = compare_captures(a, b)
    assert bool(c.kl.isinf().all())  # every token but the best has mass under a and none under b
    fig = make_figure("compare", a, interactive=True, other=b)
    assert "KL infinite at 2 step(s): B's decoding removed a token A could pick" in fig.layout.title.text
    static = make_figure("compare", a, other=b)
    assert "KL infinite at 2 step(s)" in static.get_suptitle()
    assert "max inf nats" in c.describe()
