"""The Prompt view's prompt form: the notebook's lines or the model's chat template, for DailyDialog turns and free
text. References: prompts written out by hand, and ``apply_chat_template`` of hand-built messages."""

from __future__ import annotations

import pytest
from conftest import dailydialog_dir
from dashboard_helpers import free_text, new_app, ok, texts

#: A chat template in plain text: the built-in byte-level tokenizer has no special tokens for one.
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture
def chat_model(monkeypatch):
    """The built-in model's tokenizer given :data:`TEMPLATE`."""
    import inspector._fallback as fallback

    plain = fallback.builtin_tokenizer

    def with_template():
        tok = plain()
        tok.chat_template = TEMPLATE
        return tok

    monkeypatch.setattr(fallback, "builtin_tokenizer", with_template)


@pytest.fixture
def page(fresh, monkeypatch):
    """The built-in model's page with DailyDialog from the shared copy (skips without one); yields ``state``."""
    dd = dailydialog_dir()
    if dd is None:
        pytest.skip("DailyDialog not found: set INSPECTOR_DAILYDIALOG_DIR")
    monkeypatch.setenv("INSPECTOR_DAILYDIALOG_DIR", str(dd))
    fresh.clear_caches()
    return fresh


def shown_prompt(at):
    return [c.value for c in at.code][-1]


def dialogue_turns(dial_id):
    from inspector.data import load_dailydialog

    return load_dailydialog("validation", dailydialog_dir())[dial_id].turns


def test_without_a_chat_template_the_form_is_the_notebooks(page):
    at = new_app().run()
    ok(at)
    form = at.selectbox(key="dd_template")
    assert list(form.options) == ["auto (notebook)", "notebook", "plain"]
    at.slider(key="dd_context").set_value(1).run()
    dial_id, turn = at.selectbox(key="dd_turn").value
    utterance = dialogue_turns(dial_id)[turn]
    assert shown_prompt(at) == f"User: {utterance} \nAgent:"
    at.selectbox(key="dd_template").set_value("plain").run()
    ok(at)
    assert shown_prompt(at) == f"User: {utterance}\nAgent:"
    free_text(at, "hello").run()
    assert at.checkbox(key="free_chat").disabled


def test_chat_template_prompts_for_a_turn_and_for_free_text(page, chat_model):
    state = page
    at = new_app().run()
    ok(at)
    assert list(at.selectbox(key="dd_template").options) == ["auto (chat)", "chat", "notebook", "plain"]
    dial_id, _ = at.selectbox(key="dd_turn").value
    at.selectbox(key="dd_turn").set_value((dial_id, 1)).run()  # the dialogue's second turn
    at.slider(key="dd_context").set_value(2).run()
    ok(at)
    turns = dialogue_turns(dial_id)
    expected = f"<assistant>{turns[0]}</assistant>\n<user>{turns[1]}</user>\n<assistant>"
    assert at.selectbox(key="dd_turn").value == (dial_id, 1) and shown_prompt(at) == expected
    assert "last user message" in texts(at.caption)
    at.selectbox(key="dd_template").set_value("notebook").run()
    assert shown_prompt(at) == f"Agent: {turns[0]} \nUser: {turns[1]} \nAgent:"

    free_text(at, "How are you?")
    at.checkbox(key="free_chat").check().run()
    ok(at)
    assert shown_prompt(at) == "<user>How are you?</user>\n<assistant>"
    at.slider(key="max_new_tokens").set_value(3)
    at.button(key="generate").click().run()
    ok(at)
    cap = at.session_state[state.CAPTURE]
    assert cap.meta.source["kind"] == "text" and cap.meta.source["template"] == "chat"
    reference = list(b"<user>How are you?</user>\n<assistant>")  # one token per byte
    assert [int(t) for t in cap.token_ids[: cap.prompt_len]] == reference


def test_the_run_form_offers_the_prompt_forms_of_the_pages_model(page, chat_model):
    at = new_app().run()
    ok(at)
    at.session_state["view"] = "Corpus"
    at.run()
    ok(at)
    form = at.selectbox(key="run_template")
    assert list(form.options) == ["auto (chat)", "chat", "notebook", "plain"] and form.value == "auto"
