"""Bad input is refused before any model work; loading errors say what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import torch

import inspector
import inspector._devices
import inspector._model as model_mod
from inspector._fallback import builtin_tokenizer

PROMPT = "User: hey how are you? \nAgent:"


@pytest.fixture
def forward_counter(byte_tiny):
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1

    handle = byte_tiny.model.register_forward_hook(hook)
    yield calls
    handle.remove()


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        ("", {}, "prompt 0 is empty"),
        ("   ", {}, "prompt 0 is empty"),
        (["ok", ""], {}, "prompt 1 is empty"),
        ([], {}, "no prompts"),
        (PROMPT, {"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
        (PROMPT, {"max_new_tokens": -3}, "max_new_tokens must be a positive integer"),
        (PROMPT, {"num_beams": 0}, "num_beams must be an integer >= 1"),
        (PROMPT, {"do_sample": True, "top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        (PROMPT, {"do_sample": True, "top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        (PROMPT, {"do_sample": True, "temperature": -1.0}, "temperature must be >= 0"),
        (PROMPT, {"top_k": -2}, "top_k must be"),
        (PROMPT, {"attention_dtype": "int8"}, "attention_dtype must be one of"),
        (PROMPT, {"num_beams": 2, "num_return_sequences": 3}, "cannot exceed num_beams"),
        (PROMPT, {"num_beams": 2, "do_sample": True}, "beam sampling is not supported"),
        ("word " * 1100, {}, "context is 1024.*truncate_prompt=True"),
        (PROMPT, {"max_new_tokens": 1024}, "leaves no room"),
        # types, unpaired surrogates, bools for ints, unhashable dtypes, stop-string bounds
        ({"a": 1}, {}, "prompts must be a str or a list of str, got dict"),
        (7, {}, "prompts must be a str or a list of str, got int"),
        (None, {}, "prompts must be a str or a list of str, got NoneType"),
        (b"hello", {}, "prompts must be a str or a list of str, got bytes"),
        ([1, 2], {}, "prompt 0 is int, not str: prompts must be a str or a list of str"),
        (["ok", b"x"], {}, "prompt 1 is bytes, not str"),
        ("\ud800", {}, r"prompt 0 \('\\ud800'\) is not valid text: it holds an unpaired surrogate"),
        (["ok", "abc\udcff"], {}, "prompt 1 .* unpaired surrogate '\\\\udcff' at character 3"),
        (PROMPT, {"max_new_tokens": True}, "max_new_tokens must be an integer, got True"),
        (PROMPT, {"num_beams": True}, "num_beams must be an integer"),
        (PROMPT, {"attention_dtype": []}, "attention_dtype must be one of"),
        (PROMPT, {"stop_strings": ["x" * 257]}, "at most 256 are allowed"),
        (PROMPT, {"stop_strings": [str(i) for i in range(33)]}, "at most 32 stop strings"),
    ],
)
def test_bad_input_raises_before_model_work(byte_tiny, forward_counter, prompt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        byte_tiny.generate(prompt, **kwargs)
    assert forward_counter["n"] == 0


def test_prompt_budget_refuses_what_generate_refuses(byte_tiny):
    from inspector._capture.encode import prompt_budget
    from inspector._capture.settings import GenerationSettings

    assert prompt_budget(byte_tiny, "", GenerationSettings()).prompt_tokens == 0
    assert prompt_budget(byte_tiny, "abc", GenerationSettings()).prompt_tokens == 3
    with pytest.raises(ValueError, match="unpaired surrogate"):
        prompt_budget(byte_tiny, "a\ud800", GenerationSettings())
    with pytest.raises(ValueError, match="str or a list of str"):
        prompt_budget(byte_tiny, cast(Any, None), GenerationSettings())  # deliberately not a str


@pytest.mark.slow
def test_undecodable_command_line_prompt_is_one_line_exit_2(tmp_path):
    """Bytes that are not UTF-8 arrive as surrogates (surrogateescape); refused before loading any model."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "inspector.cli.main", "capture", "--prompt", b"caf\xe9 \xff",
         "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "c.safetensors")],
        capture_output=True, cwd=root, env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    err = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--prompt holds bytes that are not valid UTF-8" in err
    assert not (tmp_path / "c.safetensors").exists()


def test_truncate_prompt_keeps_the_end(byte_tiny):
    words = " ".join(f"w{i}" for i in range(800))
    cap = byte_tiny.generate(words, max_new_tokens=4, truncate_prompt=True, keep_attention=False)
    ids = byte_tiny.tokenizer(words)["input_ids"]
    assert cap.prompt_len == 1024 - 4
    assert cap.token_ids[: cap.prompt_len].tolist() == ids[-cap.prompt_len :]
    assert cap.meta.generation["prompt_truncated_tokens"] == len(ids) - cap.prompt_len


def test_unknown_and_unavailable_devices():
    with pytest.raises(ValueError, match="available here: .*cpu"):
        inspector._devices.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available here; available: .*cpu"):
            inspector._devices.resolve_device("cuda")
    assert inspector._devices.resolve_device("auto").type == inspector._devices.available_devices()[0]
    assert inspector._devices.available_devices()[-1] == "cpu"


def test_unknown_device_in_load_model_before_loading(gpt2_dir):
    with pytest.raises(ValueError, match="unknown device"):
        inspector.load_model(gpt2_dir, device="gpu0", random_weights=True)


def test_hub_unreachable_message(monkeypatch):
    monkeypatch.setattr(model_mod, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(inspector.ModelLoadError) as err:
        inspector.load_model("gpt2", device="cpu")
    text = str(err.value)
    assert "'gpt2'" in text and "Hub could not be reached" in text and "local folder" in text


def test_missing_local_folder_message(tmp_path):
    with pytest.raises(inspector.ModelLoadError, match="does not exist"):
        inspector.load_model(str(tmp_path / "nope"), device="cpu")


def test_folder_without_weights_suggests_random_weights(gpt2_dir):
    # The Python API names its argument; the command line's flag is in cli_message (tests/test_cli_errors.py).
    with pytest.raises(inspector.ModelLoadError, match="random_weights=True") as err:
        inspector.load_model(gpt2_dir, device="cpu")
    assert "--random-weights" not in str(err.value) and "--random-weights" in err.value.cli_message


def test_random_weights_are_recorded_and_seeded(tiny_dir):
    a = inspector.load_model(tiny_dir, device="cpu", random_weights=True, seed=3)
    b = inspector.load_model(tiny_dir, device="cpu", random_weights=True, seed=3)
    assert a.random_weights and a.model.config._attn_implementation == "eager"
    wa, wb = (m.get_parameter("transformer.h.0.attn.c_attn.weight") for m in (a.model, b.model))
    assert torch.equal(wa, wb)
    cap = a.generate("Hello", max_new_tokens=2)
    assert cap.meta.random_weights is True and "RANDOM" in a.describe()


def test_sdpa_model_is_switched_to_eager():
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = builtin_tokenizer()
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(tokenizer))
    model = GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    im = inspector.InspectorModel.from_model(model, tokenizer)
    assert im.model.config._attn_implementation == "eager"
    cap = im.generate("Hello there", max_new_tokens=2)
    assert cap.attentions is not None and cap.attentions.shape[:2] == (2, 2)


def test_model_that_cannot_switch_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = builtin_tokenizer()
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=len(tokenizer))
    model = GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")

    def refuse(impl):
        raise ValueError("not supported")

    model.set_attn_implementation = refuse
    with pytest.raises(ValueError, match="sdpa.*returns no attention weights"):
        inspector.InspectorModel.from_model(model, tokenizer)


def test_float16_on_cpu_refused():
    with pytest.raises(ValueError, match="float16 is not supported on the CPU"):
        model_mod.resolve_dtype("float16", torch.device("cpu"))
