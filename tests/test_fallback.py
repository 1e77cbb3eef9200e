"""Models that always load: the built-in byte-level model and :func:`inspector._fallback.load_with_fallback`."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

import inspector._fallback as fallback


def test_builtin_tokenizer_is_lossless_bytes_plus_eos():
    tok = fallback.builtin_tokenizer()
    assert len(tok) == 257 and tok.eos_token == fallback.EOS_TOKEN and tok.eos_token_id == 256
    text = "User: héllo, 😀 \n\tAgent:"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))  # one token per byte, id = byte value
    assert tok.decode(ids) == text
    assert tok(fallback.EOS_TOKEN, add_special_tokens=False)["input_ids"] == [256]


def test_builtin_model_is_small_random_and_generates():
    im = fallback.builtin_model(seed=3)
    cfg = im.model.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == (4, 4, 64)
    assert isinstance(im.model, GPT2LMHeadModel)
    assert len(im.model.transformer.h) == 4 and cfg.vocab_size == 257
    assert im.random_weights and im.name == fallback.BUILTIN_NAME
    assert "RANDOM" in im.describe()
    cap = im.generate("User: hi\nAgent:", max_new_tokens=7)
    assert cap.num_steps <= 7 and cap.meta.random_weights
    assert cap.attentions is not None
    assert cap.attentions.shape[:2] == (4, 4)
    rows = cap.attentions.float().sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-2)
    again = fallback.builtin_model(seed=3).generate("User: hi\nAgent:", max_new_tokens=7)
    assert again.tokens == cap.tokens  # seeded weights: reproducible


def test_builtin_model_rejects_misspelt_size():
    with pytest.raises(ValueError, match="n_layers"):
        fallback.builtin_model(n_layers=2)
    im = fallback.builtin_model(n_layer=2, n_head=2, n_embd=16)
    assert isinstance(im.model, GPT2LMHeadModel)
    assert len(im.model.transformer.h) == 2


def test_builtin_by_name_is_not_a_fallback():
    res = fallback.load_with_fallback("builtin", device="cpu")
    assert res.level == "builtin" and not res.fell_back and res.errors == []
    model, message = res
    assert model is res.model and "meaningless" in message


@pytest.mark.parametrize(("folder", "layers", "vocab"), [
    ("tiny_dir", 2, 257),
    pytest.param("gpt2_dir", 12, 50257, id="full-size", marks=pytest.mark.slow),
])
def test_missing_model_falls_back_to_local_config(no_demo_model, tmp_path, request, folder, layers, vocab):
    config_dir = request.getfixturevalue(folder)
    res = fallback.load_with_fallback(tmp_path / "no-such-model", device="cpu", config_dir=config_dir)
    assert res.level == "local-config" and res.fell_back
    assert res.model.random_weights and res.model.num_layers == layers
    assert "does not exist" in res.message and str(config_dir) in res.message and "meaningless" in res.message
    assert len(res.model.tokenizer) == vocab


def test_nothing_usable_falls_back_to_builtin(no_demo_model, tmp_path, monkeypatch):
    monkeypatch.setattr(fallback, "default_config_dirs", lambda extra=None: [tmp_path / "empty"])
    res = fallback.load_with_fallback(tmp_path / "no-such-model", device="cpu")
    assert res.level == "builtin" and res.fell_back
    assert "no config.json" in res.message and "built-in" in res.message
    assert res.model.generate("hi", max_new_tokens=2).meta.random_weights


def test_broken_config_folder_is_skipped(no_demo_model, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    monkeypatch.setattr(fallback, "default_config_dirs", lambda extra=None: [broken])
    res = fallback.load_with_fallback(tmp_path / "no-such-model", device="cpu")
    assert res.level == "builtin" and len(res.errors) == 2 and str(broken) in res.message


def _network_forbidden(monkeypatch) -> list[tuple]:
    """Every name lookup and connection attempt fails at once and is recorded (retries would show here)."""
    asked: list[tuple] = []

    def refuse(*args, **kwargs):
        asked.append(args[:1])
        raise OSError("network forbidden in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return asked


def test_offline_hub_id_fails_fast_with_a_plain_message(no_demo_model, tmp_path, monkeypatch):
    """No hub attempt at all when HF_HUB_OFFLINE is set (benchmarks/bench_cli.py times the fallback)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(fallback, "default_config_dirs", lambda extra=None: [])
    asked = _network_forbidden(monkeypatch)
    res = fallback.load_with_fallback("gpt2", device="cpu")
    assert asked == []  # no connection tried, so no minute of hub retries
    assert res.level == "builtin"
    assert "could not be reached" in res.errors[0] and "local folder" in res.errors[0]
    from inspector._hub import hub_reachable

    assert not hub_reachable()


def test_unreachable_hub_is_asked_once(no_demo_model, tmp_path, monkeypatch):
    """Without HF_HUB_OFFLINE: one connection attempt decides, no retries, then the built-in model."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.setattr(fallback, "default_config_dirs", lambda extra=None: [])
    import inspector._hub as hub

    hub.forget_hub_check()
    asked = _network_forbidden(monkeypatch)
    try:
        res = fallback.load_with_fallback("gpt2", device="cpu")
    finally:
        hub.forget_hub_check()
    assert asked == [(("hub.invalid", 443),)]
    assert res.level == "builtin" and "could not be reached from here" in res.errors[0]


def test_unavailable_device_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="not available|unknown device"):
        fallback.load_with_fallback("builtin", device="no-such-device")


def test_default_config_dirs_order(monkeypatch, tmp_path):
    monkeypatch.setenv("INSPECTOR_GPT2_OFFLINE_DIR", str(tmp_path / "env"))
    dirs = fallback.default_config_dirs(tmp_path / "mine")
    assert dirs[0] == tmp_path / "mine" and dirs[1] == tmp_path / "env"
    assert any(d.parts[-3:] == ("shared", "models", "gpt2-offline") for d in dirs[2:])


@pytest.mark.slow
def test_fallback_module_does_not_import_streamlit():
    import subprocess
    import sys

    code = "import sys, inspector._fallback as f; f.builtin_model(); print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_the_trained_demo_model_stands_in_before_random_weights(smollm2, tmp_path):
    res = fallback.load_with_fallback(tmp_path / "no-such-model", device="cpu")
    assert res.level == "demo" and res.fell_back and res.model.name == "smollm2"
    assert not res.model.random_weights and res.model.model_file["quantization"] == "Q4_1"
    assert "does not exist" in res.message and "a real trained model" in res.message and "not GPT-2" in res.message
    # asking for random weights keeps asking for random weights: no trained model instead
    res = fallback.load_with_fallback(tmp_path / "no-such-model", device="cpu", random_weights=True)
    assert res.level in ("local-config", "builtin") and res.model.random_weights


@pytest.mark.slow
def test_dashboard_opens_on_the_demo_model_with_a_banner(smollm2, fresh, monkeypatch, tmp_path):
    from dashboard_helpers import new_app, ok, texts

    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", str(tmp_path / "no-such-model"))
    at = new_app().run(timeout=120)
    ok(at)
    banner = texts(at.info)
    assert "SmolLM2-135M-Instruct, a real trained model" in banner and "not GPT-2" in banner
    assert "Q4_1" in banner and not texts(at.error)
