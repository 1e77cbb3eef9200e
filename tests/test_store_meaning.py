"""Loading checks what the values mean: edits that keep the file well formed (checksums recomputed) but hold
values no capture can have are refused, each with a message naming the value; real captures of every
decoding mode load unchanged."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import inspector
import inspector._fileformat as fileformat
from inspector._store import CaptureFileError

PROMPT = "User: hey how are you? \nAgent:"


@pytest.fixture(scope="module")
def greedy(tiny):
    return tiny.generate(PROMPT, max_new_tokens=8, keep_logits=True,
                         sources={"kind": "text", "segments": [{"start": 0, "end": 3, "turn": 0, "speaker": "User",
                                                                "role": "text"}]})


@pytest.fixture(scope="module")
def warm(tiny):
    """Sampling at temperature 0.7: processed scores differ from raw ones in a known way."""
    return tiny.generate(PROMPT, max_new_tokens=12, do_sample=True, temperature=0.7, seed=3)


@pytest.fixture(scope="module")
def filtered(tiny):
    """Sampling at temperature 1 with top-k and top-p: processed log-probabilities only grow; ranks <= 5."""
    return tiny.generate(PROMPT, max_new_tokens=12, do_sample=True, top_k=5, top_p=0.9, seed=4)


@pytest.fixture(scope="module")
def selective(tiny):
    return tiny.generate(PROMPT, max_new_tokens=6, layers=[1], attention_rows="generated")


def load_edited(cap, tmp_path, edit_tensors=None, edit_doc=None):
    """Write ``cap`` with edited tensors/document as a valid file (fresh checksums) and load it."""
    tensors, doc = cap.to_parts()
    tensors = {k: v.clone() for k, v in tensors.items()}
    doc = copy.deepcopy(doc)
    if edit_tensors:
        edit_tensors(tensors)
    if edit_doc:
        edit_doc(doc)
    path = fileformat.write(tmp_path / "edited.safetensors", tensors, doc)
    return inspector.load_capture(path)


def refused(cap, tmp_path, match, edit_tensors=None, edit_doc=None):
    with pytest.raises(CaptureFileError, match=r"edited\.safetensors: not a valid inspector capture \(.*" + match):
        load_edited(cap, tmp_path, edit_tensors, edit_doc)


# ------------------------------------------------------------------------------------ real captures load
@pytest.mark.parametrize("settings", [
    {}, {"do_sample": True, "temperature": 0.7, "seed": 1}, {"do_sample": True, "temperature": 1.6, "seed": 1},
    {"do_sample": True, "temperature": 0.05, "seed": 1}, {"do_sample": True, "top_k": 5, "seed": 2},
    {"do_sample": True, "top_p": 0.5, "seed": 3}, {"do_sample": True, "temperature": 0.6, "top_k": 20, "seed": 3},
    {"repetition_penalty": 1.3}, {"num_beams": 3}, {"attention_dtype": "bfloat16"}, {"head_reduce": "mean"},
    {"lens_k": 3, "keep_hidden_states": True, "keep_value_norms": True, "keep_logits": True},
    {"layers": [0], "heads": [1], "attention_rows": "generated"}, {"keep_attention": False},
])
def test_captures_of_every_mode_load_unchanged(tiny, tmp_path, settings):
    cap = tiny.generate(PROMPT, max_new_tokens=10, **settings)
    loaded = load_edited(cap, tmp_path)
    for name, t in cap.tensors().items():
        torch.testing.assert_close(loaded.tensors()[name], t, rtol=0, atol=0, equal_nan=True, msg=name)


def test_a_forced_capture_loads(tiny, tmp_path):
    from inspector._capture.forced import score

    cap = score(tiny, PROMPT, " fine thanks, and you?")
    assert isinstance(cap, inspector.Capture)
    assert torch.equal(load_edited(cap, tmp_path).raw.entropy, cap.raw.entropy)


@pytest.mark.slow
def test_a_trained_models_capture_loads(smollm2, tmp_path):
    cap = smollm2.generate("What is the capital of France?", max_new_tokens=12, do_sample=True, temperature=0.8,
                           top_p=0.9, seed=0, keep_logits=True)
    assert torch.equal(load_edited(cap, tmp_path).raw.chosen_rank, cap.raw.chosen_rank)


# ---------------------------------------------------------------------------------------- token scores
def _set(name, fn):
    return lambda t: t.update({name: fn(t[name])})


@pytest.mark.parametrize(("edit", "match"), [
    (_set("raw.entropy", lambda x: x.index_fill(0, torch.tensor([2]), -0.5)), r"raw entropy outside \[0, ln 50257\]"),
    (_set("processed.entropy", lambda x: x.index_fill(0, torch.tensor([1]), math.inf)), "processed entropy outside"),
    (_set("raw.entropy", lambda x: x.index_fill(0, torch.tensor([1]), 11.0)), r"raw entropy outside \[0, ln 50257\]"),
    (_set("raw.entropy", lambda x: x * 0.01), "raw entropy is lower than its top-k probabilities allow"),
    (_set("raw.chosen_logprob", lambda x: x.abs()), "raw log-probabilities above 0"),
    (_set("processed.topk_logprobs", lambda x: x + 15.0), "processed log-probabilities above 0"),
    (_set("raw.chosen_rank", lambda x: x.fill_(10**15)), "raw chosen ranks up to 1000000000000000, beyond the vocab"),
    (_set("raw.topk_logprobs", lambda x: x.flip(1)), "raw top-k log-probabilities are not sorted"),
    (_set("raw.topk_ids", lambda x: x.roll(1, dims=1)), "raw chosen ranks disagree with top-k ids"),
])
def test_impossible_scores_are_refused(greedy, tmp_path, edit, match):
    refused(greedy, tmp_path, match, edit_tensors=edit)


def test_a_rank_that_disagrees_with_the_top_k_is_refused(filtered, tmp_path):
    ranks = filtered.raw.chosen_rank
    assert bool((ranks > 1).any()) and bool((ranks < filtered.raw.k).all())
    refused(filtered, tmp_path, "raw chosen (ranks disagree with top-k ids|log-probabilities disagree with their "
            "ranks)", edit_tensors=_set("raw.chosen_rank", lambda x: x + 1))
    refused(filtered, tmp_path, "processed chosen (ranks disagree|log-probabilities disagree)",
            edit_tensors=_set("processed.chosen_rank", lambda x: x.clamp(max=2) % 2 + 1))


def test_greedy_chose_rank_one(greedy, tmp_path):
    def rank_two(t):  # consistent with the top-k: the chosen token moved to second place
        for kind in ("raw", "processed"):
            t[f"{kind}.chosen_rank"][0] = 2
            ids, lps = t[f"{kind}.topk_ids"], t[f"{kind}.topk_logprobs"]
            ids[0, [0, 1]] = ids[0, [1, 0]].clone()
            lps[0, 1] = lps[0, 0].clone()
            lps[0, 0] += 0.01

    refused(greedy, tmp_path, "greedy decoding chose a token that is not the most likely one", edit_tensors=rank_two)


@pytest.mark.parametrize("which", ["warm", "filtered"])
def test_raw_and_processed_swapped_are_refused(warm, filtered, tmp_path, which):
    cap = warm if which == "warm" else filtered

    def swap(t):
        for f in ("entropy", "chosen_logprob", "chosen_rank", "topk_ids", "topk_logprobs"):
            t[f"raw.{f}"], t[f"processed.{f}"] = t[f"processed.{f}"], t[f"raw.{f}"]

    match = ("processed top-k log-probabilities are not the raw ones at temperature 0.7" if which == "warm"
             else "processed log-probabilities below raw ones")
    refused(cap, tmp_path, match, edit_tensors=swap)


# ------------------------------------------------------------------------------------------- attention
def test_attention_rows_must_sum_to_one(greedy, tmp_path):
    refused(greedy, tmp_path, r"attentions rows of layer entry 0 sum to 0\.[45]",
            edit_tensors=_set("attentions", lambda x: x * 0.5))


def test_attention_must_be_causal(greedy, tmp_path):
    def leak(t):  # every query row gives all of its weight to the last key: rows still sum to 1
        a = t["attentions"]
        a.zero_()
        a[..., -1] = 1.0

    refused(greedy, tmp_path, "attentions of layer entry 0 is not causal", edit_tensors=leak)


def test_rows_summing_to_13_are_refused(greedy, tmp_path):
    refused(greedy, tmp_path, "(not causal|sum to)", edit_tensors=_set("attentions", lambda x: x.fill_(0.5)))


def test_float16_attention_read_as_bfloat16_is_refused(greedy, tmp_path):
    """The bytes of float16 weights taken for bfloat16 (as a header edit would) give rows summing to ~0."""
    def reinterpret(t):
        t["attentions"] = t["attentions"].view(torch.bfloat16)

    def doc(d):
        d["meta"]["generation"]["attention_dtype"] = d["meta"]["attention_dtype"] = "bfloat16"

    refused(greedy, tmp_path, "attentions rows of layer entry 0 sum to", edit_tensors=reinterpret, edit_doc=doc)


def test_step_attention_rows_are_checked_too(selective, tmp_path):
    refused(selective, tmp_path, "step_attentions of layer entry 0 is not causal",
            edit_tensors=_set("step_attentions", lambda x: x.flip(-1)))


def test_a_selective_layout_relabelled_is_refused(selective, tmp_path):
    assert selective.attention_layout.layers == (1,)
    refused(selective, tmp_path, r"the attention layout \(layers 0; .*\) is not what the settings captured "
            r"\(layers 1;", edit_doc=lambda d: d["attention_layout"].update(layers=[0]))


# -------------------------------------------------------------------------------------------- metadata
@pytest.mark.parametrize(("edit", "match"), [
    (lambda d: d["meta"]["generation"].update(max_new_tokens="x"), "max_new_tokens must be an integer, got 'x'"),
    (lambda d: d["meta"]["generation"].update(max_new_tokens=3), "8 generated steps, more than max_new_tokens=3"),
    (lambda d: d["meta"]["generation"].update(temperature=-1.0), "temperature must be >= 0"),
    (lambda d: d["meta"]["generation"].update(prompt_truncated_tokens=-2), "'prompt_truncated_tokens' must be a non"),
    (lambda d: d["meta"]["source"]["segments"][0].update(end=10_000), r"segment 0\.\.10000 lies outside the prompt"),
    (lambda d: d["meta"]["source"]["segments"][0].update(start="0"), "needs integer 'start' and 'end'"),
    (lambda d: d["meta"]["generation"].update(keep_attention=False), "the capture holds attention, its settings"),
])
def test_impossible_metadata_is_refused(greedy, tmp_path, edit, match):
    refused(greedy, tmp_path, match, edit_doc=edit)


def test_segments_within_the_prompt_load(greedy, tmp_path):
    assert load_edited(greedy, tmp_path).meta.source["segments"][0]["end"] == 3
