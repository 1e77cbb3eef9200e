"""A model load asks the Hub one question with a bounded time, then reads a local folder."""

from __future__ import annotations

import shutil
import threading
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

import inspector._hub as hub
import inspector._model as model_mod
from inspector._model import ModelLoadError


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # nothing cached
    monkeypatch.setattr(model_mod, "HUB_TIMEOUT", 0.5)
    monkeypatch.setattr(model_mod, "hub_reachable", lambda timeout=3.0: True)  # the TCP check passes
    hub.forget_hub_check()
    downloads: list[dict] = []

    def no_download(repo_id, filename, **kwargs):
        if kwargs.get("local_files_only"):  # a cache lookup (the loader's first check): nothing cached
            raise LocalEntryNotFoundError("not in the cache")
        downloads.append({"filename": filename, **kwargs})
        pytest.fail(f"downloaded {filename} although the Hub did not answer")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    yield downloads
    hub.forget_hub_check()


def test_a_silent_hub_is_asked_once_within_the_bound(hub_env, monkeypatch):
    calls, release = [], threading.Event()

    def silent(self, repo_id, *, revision=None, timeout=None, **kwargs):
        calls.append(timeout)
        release.wait(30)  # accepts the connection, never answers
        raise TimeoutError("read timed out")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", silent)
    try:
        with pytest.raises(ModelLoadError, match="could not be reached"):
            model_mod.load_model("someone/some-model", device="cpu")
    finally:
        release.set()
    assert len(calls) == 1 and 0 < calls[0] <= 0.5  # the loader passed (what is left of) its bound
    assert hub.hub_reachable() is False  # the answer is kept: the data loader does not ask again


def test_a_refused_connection_is_one_question_too(hub_env, monkeypatch):
    import httpx2 as httpx

    calls = []

    def refused(self, repo_id, *, revision=None, timeout=None, **kwargs):
        calls.append(timeout)
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", refused)
    with pytest.raises(ModelLoadError, match="could not be reached"):
        model_mod.load_model("someone/some-model", device="cpu")
    assert len(calls) == 1


def test_an_answering_hub_gives_the_files_at_its_commit(hub_env, monkeypatch, tmp_path, gpt2_dir):
    sha = "0123456789abcdef0123456789abcdef01234567"
    files = sorted(p.name for p in gpt2_dir.iterdir() if p.is_file())
    siblings = [*files, "model.safetensors", "README.md", "onnx/decoder.onnx", "flax_model.msgpack"]
    asked = []

    def answer(self, repo_id, *, revision=None, timeout=None, **kwargs):
        asked.append((repo_id, revision, timeout))
        return SimpleNamespace(sha=sha, siblings=[SimpleNamespace(rfilename=n) for n in siblings])

    got = []
    snapshot = tmp_path / "snapshots" / sha
    snapshot.mkdir(parents=True)

    def download(repo_id, filename, *, revision=None, etag_timeout=None, **kwargs):
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not in the cache")
        got.append((filename, revision, etag_timeout))
        shutil.copy(gpt2_dir / filename, snapshot / filename)
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", answer)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    im = model_mod.load_model("someone/some-model", device="cpu", random_weights=True)
    assert len(asked) == 1 and asked[0][0] == "someone/some-model" and asked[0][2] <= 0.5
    assert sorted(f for f, _, _ in got) == [f for f in files if not f.endswith((".md",))]  # no weights: random
    assert {r for _, r, _ in got} == {sha} and all(0 < t <= 0.5 for _, _, t in got)
    assert im.name == "someone/some-model"  # named as asked, not by its cache folder
    assert im.num_layers == 12


def test_model_files_picks_what_loading_needs():
    info = SimpleNamespace(siblings=[SimpleNamespace(rfilename=n) for n in (
        "config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin", "README.md", "onnx/model.onnx",
        "modeling_x.py", "model.safetensors.index.json")])
    assert hub.model_files(info) == ["config.json", "model.safetensors", "model.safetensors.index.json",
                                     "tokenizer.json"]
    assert hub.model_files(info, random_weights=True) == ["config.json", "tokenizer.json"]
    assert "modeling_x.py" in hub.model_files(info, remote_code=True)
