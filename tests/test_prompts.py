"""Prompt building: the notebook's form, token provenance, templates, the token budget."""

from __future__ import annotations

import json

import pytest

from inspector._fallback import builtin_tokenizer
from inspector.data import build_prompt, get_template, load_dailydialog, segments_from_source
from inspector.data.prompts import PromptTemplate

DIALOG = [
    "Good morning , sir . Is there a bank near here ?",
    "There is one . 5 blocks away from here ?",
    "Well , that's too far.Can you change some money for me ?",
    "Surely , of course . What kind of currency have you got ?",
]


@pytest.fixture(scope="module")
def byte_tokenizer():
    """One token per byte, built in code: prompt mechanics need no tokenizer file."""
    return builtin_tokenizer()


@pytest.fixture(params=["byte", "gpt2"])
def any_tokenizer(request):
    """The byte-level tokenizer, and the real GPT-2 one (whose merges cross piece boundaries) when present."""
    return request.param, request.getfixturevalue("byte_tokenizer" if request.param == "byte" else "tokenizer")


def check_segments(prompt, tokenizer):
    """Segments tile the tokens, and the tokens are what the engine will get from the text."""
    assert tokenizer(prompt.text, add_special_tokens=False)["input_ids"] == list(prompt.token_ids)
    pos = 0
    for s in prompt.segments:
        assert s.start == pos and s.end > s.start
        pos = s.end
    assert pos == len(prompt.token_ids)


def test_notebook_prompt_ids(tokenizer):
    # ids of "User: hey how are you? \nAgent:" given in ../shared/README.md (the same as real GPT-2's)
    p = build_prompt(["hey how are you?"], 0, tokenizer, context_turns=1)
    assert p.text == "User: hey how are you? \nAgent:"
    assert list(p.token_ids) == [12982, 25, 17207, 703, 389, 345, 30, 220, 198, 36772, 25]
    assert [(s.start, s.end, s.turn, s.speaker, s.role) for s in p.segments] == [
        (0, 2, 0, "User", "marker"), (2, 9, 0, "User", "text"), (9, 11, 1, "Agent", "cue")]


def test_last_k_turns_alternate_and_the_answered_turn_is_user(any_tokenizer):
    name, tokenizer = any_tokenizer
    p = build_prompt(DIALOG, 3, tokenizer, context_turns=3, dial_id=7, split="validation")
    assert p.text == (f"User: {DIALOG[1]} \nAgent: {DIALOG[2]} \nUser: {DIALOG[3]} \nAgent:")
    assert p.context_turns == (1, 2, 3) and p.dropped_turns == 0
    check_segments(p, tokenizer)
    # every segment decodes to the piece it claims; a token belongs to the piece holding its last
    # character, so GPT-2's " Well" joins the text while a byte-level " " stays with its marker
    pieces = [tokenizer.decode(list(p.token_ids[s.start : s.end])) for s in p.segments]
    if name == "gpt2":
        assert pieces == ["User:", f" {DIALOG[1]} \n", "Agent:", f" {DIALOG[2]} \n", "User:", f" {DIALOG[3]} \n",
                          "Agent:"]
    else:
        assert pieces == ["User: ", f"{DIALOG[1]} \n", "Agent: ", f"{DIALOG[2]} \n", "User: ", f"{DIALOG[3]} \n",
                          "Agent:"]
    assert [(s.turn, s.speaker, s.role) for s in p.segments] == [
        (1, "User", "marker"), (1, "User", "text"), (2, "Agent", "marker"), (2, "Agent", "text"),
        (3, "User", "marker"), (3, "User", "text"), (4, "Agent", "cue")]
    turns = p.token_turns()
    assert len(turns) == len(p) and turns[0] == 1 and turns[-1] == 4
    assert set(p.token_roles()) == {"marker", "text", "cue"}
    # fewer turns than k at the start of a dialogue
    assert build_prompt(DIALOG, 0, tokenizer, context_turns=3).context_turns == (0,)


def test_source_is_json_and_round_trips(byte_tokenizer):
    p = build_prompt(DIALOG, 2, byte_tokenizer, dial_id=3, split="validation", extra={"act": "directive"})
    src = json.loads(json.dumps(p.source()))
    assert src["kind"] == "dailydialog" and src["dial_id"] == 3 and src["turn"] == 2 and src["act"] == "directive"
    assert src["num_tokens"] == len(p)
    assert tuple(segments_from_source(src)) == p.segments


def test_templates(byte_tokenizer):
    tokenizer = byte_tokenizer
    plain = build_prompt(DIALOG, 1, tokenizer, template="plain")
    assert plain.text == f"Agent: {DIALOG[0]}\nUser: {DIALOG[1]}\nAgent:"
    check_segments(plain, tokenizer)
    custom = build_prompt(DIALOG, 1, tokenizer, template="[{role}] {text}\\n", context_turns=2)
    assert custom.text == f"[Agent] {DIALOG[0]}\n[User] {DIALOG[1]}\nAgent:"
    check_segments(custom, tokenizer)
    tpl = PromptTemplate(name="ab", user="A", agent="B", header="A chat.\n")
    p = build_prompt(DIALOG, 1, tokenizer, template=tpl)
    assert p.text == f"A chat.\nB: {DIALOG[0]} \nA: {DIALOG[1]} \nB:"
    assert p.segments[0].role == "header" and p.segments[0].turn is None
    assert {s.speaker for s in p.segments[1:]} == {"User", "Agent"}
    with pytest.raises(ValueError, match="unknown prompt template"):
        get_template("fancy")
    with pytest.raises(ValueError, match="exactly once"):
        PromptTemplate(line="{role}")


def test_budget_drops_turns_from_the_left_then_cuts(any_tokenizer):
    name, tokenizer = any_tokenizer
    # "User:" + " " ... " \n" + "Agent:" is 14 bytes: one byte-level token each, and one more keeps a character
    too_small_below = {"byte": 15, "gpt2": 12}[name]
    full = build_prompt(DIALOG, 3, tokenizer, context_turns=4)
    for budget in range(len(full), 5, -1):
        try:
            p = build_prompt(DIALOG, 3, tokenizer, context_turns=4, max_tokens=budget)
        except ValueError as exc:
            assert "too small" in str(exc) and budget < too_small_below
            continue
        assert len(p) <= budget
        check_segments(p, tokenizer)
        assert p.context_turns[-1] == 3
        if not p.truncated_chars:
            assert p.text.endswith(f"User: {DIALOG[3]} \nAgent:")
        assert p.dropped_turns == 4 - len(p.context_turns)
        # no more turns were dropped than needed: adding the next older turn back would not fit
        if p.dropped_turns and not p.truncated_chars:
            bigger = build_prompt(DIALOG, 3, tokenizer, context_turns=len(p.context_turns) + 1)
            assert len(bigger) > budget
        if p.truncated_chars:
            assert len(p.context_turns) == 1 and p.text.startswith("User: ") and DIALOG[3].endswith(
                p.text[len("User: ") : -len(" \nAgent:")])
    with pytest.raises(ValueError, match="too small"):
        build_prompt(DIALOG, 3, tokenizer, max_tokens=3)


def test_real_turns_tokenize_consistently(tokenizer, dd_dir):
    data = load_dailydialog("validation", dd_dir)
    n = 0
    for d in list(data)[:60]:
        for t in range(len(d)):
            p = build_prompt(d, t, tokenizer, max_tokens=64)
            check_segments(p, tokenizer)
            assert len(p) <= 64 and p.dial_id == d.dial_id
            n += 1
    assert n > 400


def test_bad_arguments(byte_tokenizer):
    with pytest.raises(ValueError, match="out of range"):
        build_prompt(DIALOG, 4, byte_tokenizer)
    with pytest.raises(ValueError, match="context_turns"):
        build_prompt(DIALOG, 1, byte_tokenizer, context_turns=0)
