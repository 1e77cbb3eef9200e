"""Which models load for capture: unsupported architectures refused by name, cache defaults, remote code.

Unsupported architectures (state-space, recurrent, hybrid) are refused when the model is
wrapped or loaded, before any weights load and before any generation, with a message
that names the architecture. Models that need their own code load only with
``trust_remote_code``, and the refusal names that flag.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import inspector
from inspector._architectures import UnsupportedModelError, check_supported, find_attention_modules

VOCAB, EOS = 257, 256
IDS: dict[str, Any] = {"vocab_size": VOCAB, "bos_token_id": EOS, "eos_token_id": EOS, "pad_token_id": EOS}


def _tokenizer():
    from inspector._fallback import builtin_tokenizer

    return builtin_tokenizer()


def _mamba():
    from transformers import MambaConfig

    return MambaConfig(hidden_size=32, state_size=4, num_hidden_layers=2, **IDS)


def _recurrent_gemma():
    from transformers import RecurrentGemmaConfig

    # the third block is local attention, the others recurrent
    return RecurrentGemmaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                num_key_value_heads=1, lru_width=32, attention_window_size=16, **IDS)


def _jamba():
    from transformers import JambaConfig

    # attention in one layer of eight (the layout of the released model), Mamba in the others
    return JambaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=8, num_attention_heads=4,
                       num_key_value_heads=2, num_experts=2, num_experts_per_tok=1, use_mamba_kernels=False,
                       mamba_d_state=4, mamba_dt_rank=4, **IDS)


UNSUPPORTED = {"mamba": _mamba, "recurrent_gemma": _recurrent_gemma, "jamba": _jamba}


def _build(make_config):
    from transformers import AutoModelForCausalLM

    cfg = make_config()
    assert cfg.num_hidden_layers <= 8 and cfg.hidden_size == 32 and cfg.vocab_size == VOCAB
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()


@pytest.mark.parametrize("model_type", sorted(UNSUPPORTED))
def test_unsupported_architecture_refused_when_wrapped(model_type):
    model = _build(UNSUPPORTED[model_type])
    with pytest.raises(UnsupportedModelError) as info:
        inspector.InspectorModel.from_model(model, _tokenizer(), random_weights=True)
    msg = str(info.value)
    assert type(model).__name__ in msg and repr(model_type) in msg
    assert "not supported for attention capture" in msg
    assert isinstance(info.value, ValueError)  # callers that catch bad input keep working


def test_hybrid_refusal_counts_its_attention_layers():
    model = _build(_jamba)
    with pytest.raises(UnsupportedModelError, match=r"modules in 1 of its layers.* each of its 8 layers"):
        find_attention_modules(model)


def _folder(tmp_path: Path, config) -> Path:
    """A model folder with config.json and the tokenizer, and no weights."""
    folder = tmp_path / config.model_type
    config.save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    assert not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin"))
    return folder


@pytest.mark.parametrize("random_weights", [False, True], ids=["pretrained", "random"])
def test_unsupported_architecture_refused_at_load_before_weights(tmp_path, random_weights):
    """The folder holds no weights: loading them would fail differently, so the refusal comes first."""
    folder = _folder(tmp_path, _mamba())
    with pytest.raises(UnsupportedModelError, match=r"MambaForCausalLM \(model_type 'mamba'\)"):
        inspector.load_model(folder, device="cpu", random_weights=random_weights)


def test_fallback_names_the_unsupported_architecture(no_demo_model, tmp_path, monkeypatch):
    """The dashboard's loader falls back to a GPT-2 and says why, instead of failing."""
    from inspector._fallback import load_with_fallback

    # no local GPT-2 config: the tiny built-in GPT-2 stands in (not a full-size one from ../shared)
    monkeypatch.setattr("inspector._fallback.default_config_dirs", lambda extra=None: [])
    result = load_with_fallback(_folder(tmp_path, _mamba()), device="cpu", config_dir=tmp_path / "none")
    assert result.fell_back and result.level == "builtin"
    assert "model_type 'mamba'" in result.message and "not supported for attention capture" in result.message
    assert result.model.model.config.model_type == "gpt2"


def test_encoder_decoder_refused():
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, vocab_size=VOCAB)
    with torch.device("meta"):
        model = T5ForConditionalGeneration(cfg)
    with pytest.raises(UnsupportedModelError, match="encoder-decoder"):
        check_supported(model)


def test_static_cache_default_does_not_corrupt_attention():
    """A model whose generation config asks for a static cache (keys padded to a fixed length) is captured
    with a growing cache instead: rows equal a teacher-forced pass."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.3, **IDS)
    model = _build(lambda: cfg)
    model.generation_config.cache_implementation = "static"
    im = inspector.InspectorModel.from_model(model, _tokenizer(), name="tiny-llama-static", random_weights=True)
    cap = im.generate("User: is the static cache used?\nAgent:", max_new_tokens=6, attention_dtype=torch.float32,
                      keep_logits=True)
    with torch.no_grad():
        out = model(input_ids=cap.token_ids[None], output_attentions=True, use_cache=False)
    ref = torch.stack([a[0] for a in out.attentions])
    assert cap.attentions is not None and cap.logits is not None
    assert (cap.attentions - ref).abs().max().item() <= 1e-5
    assert (cap.logits - out.logits[0, cap.prompt_len - 1 : -1]).abs().max().item() <= 1e-4


# --------------------------------------------------------------------------- trust_remote_code
_CONFIG_CODE = '''from transformers import GPT2Config


class TinyConfig(GPT2Config):
    model_type = "tiny_custom"
'''
_MODEL_CODE = '''from transformers import GPT2LMHeadModel

from .configuration_tiny import TinyConfig


class TinyForCausalLM(GPT2LMHeadModel):
    config_class = TinyConfig
'''


@pytest.fixture
def custom_code_folder(tmp_path, monkeypatch) -> Iterator[Path]:
    """A folder whose config names its own classes (``auto_map``): GPT-2 under another name."""
    import transformers.dynamic_module_utils as dmu

    # transformers copies remote code into its modules cache and puts that on sys.path: keep both private
    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    folder = tmp_path / "tiny-custom"
    folder.mkdir()
    _tokenizer().save_pretrained(folder)
    (folder / "configuration_tiny.py").write_text(_CONFIG_CODE)
    (folder / "modeling_tiny.py").write_text(_MODEL_CODE)
    config = {
        "model_type": "tiny_custom",
        "auto_map": {"AutoConfig": "configuration_tiny.TinyConfig",
                     "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM"},
        "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 128, **IDS,
    }
    (folder / "config.json").write_text(json.dumps(config))
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("transformers_modules"):
            del sys.modules[name]


def test_remote_code_refused_by_default_naming_the_flag(custom_code_folder):
    with pytest.raises(inspector.ModelLoadError) as info:
        inspector.load_model(custom_code_folder, device="cpu", random_weights=True)
    # worded for the surface: Python callers read the argument, the command line the flag
    assert "trust_remote_code=True" in str(info.value) and "--trust-remote-code" in info.value.cli_message


def test_remote_code_loads_with_the_flag(custom_code_folder):
    im = inspector.load_model(custom_code_folder, device="cpu", random_weights=True, trust_remote_code=True)
    assert type(im.model).__name__ == "TinyForCausalLM" and im.num_layers == 2
    cap = im.generate("hi", max_new_tokens=3, attention_dtype=torch.float32)
    assert cap.attentions is not None and cap.attentions.shape == (2, 2, 5, 5)


def test_cli_trust_remote_code_flag(custom_code_folder, tmp_path, capsys):
    from inspector.cli.main import main

    out = tmp_path / "cap.safetensors"
    args = ["capture", "--model", str(custom_code_folder), "--random-weights", "--device", "cpu",
            "--prompt", "hi", "--max-new-tokens", "2", "--out", str(out)]
    assert main(args) == 2
    assert "--trust-remote-code" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--trust-remote-code"]) == 0
    assert out.is_file()


def test_load_model_bfloat16_grouped_query(tmp_path):
    """``load_model(dtype="bfloat16")`` on a grouped-query Llama from a folder: captured rows equal a
    teacher-forced bfloat16 pass within bfloat16's precision, and rows are distributions."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.3, **IDS)
    im = inspector.load_model(_folder(tmp_path, cfg), device="cpu", dtype="bfloat16", random_weights=True)
    assert im.dtype == torch.bfloat16 and im.num_heads == 4 and im.model.config.num_key_value_heads == 2
    cap = im.generate("User: hello?\nAgent:", max_new_tokens=5, attention_dtype=torch.float32)
    assert cap.meta.dtype == "bfloat16"
    with torch.no_grad():
        out = im.model(input_ids=cap.token_ids[None], output_attentions=True, use_cache=False)
    ref = torch.stack([a[0] for a in out.attentions]).float()
    assert cap.attentions is not None
    assert (cap.attentions - ref).abs().max().item() <= 2e-2
    assert torch.allclose(cap.attentions.sum(-1), torch.ones(2, 4, cap.seq_len), atol=1e-2)
