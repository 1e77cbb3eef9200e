"""Exact capture on tiny random models of other Hugging Face causal LM architectures.

Each architecture is built from a config (2 layers, 4 heads, small hidden sizes, the
257-token byte-level tokenizer built in code) with eager attention, and every capture
is compared with independent references: one teacher-forced forward pass over the
final sequence with ``output_attentions=True`` (attention rows and raw logits), and a
left-padded batch against each prompt generated alone.

The weights are initialised with a large spread, so attention is far from uniform and
depends on positions: a wrong position id, mask or cache shows up well above the
tolerances (checked by :func:`test_references_are_sensitive_to_positions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import pytest
import torch

import inspector

VOCAB = 257
EOS = 256
LAYERS, HEADS = 2, 4
#: Prompts of different lengths (bytes = tokens with the byte-level tokenizer).
SHORT = "Hi there.\nB:"
LONG = "User: what time does the last train leave tonight?\nAgent:"
NEW = 10
#: Longer than the prompts plus NEW tokens would be, so a sliding window of this size is crossed.
WINDOW = 16
ATT_TOL, LOGIT_TOL = 1e-5, 1e-4


@dataclass(frozen=True)
class Arch:
    """One architecture: how to build its tiny config, and which config fields hold the sizes."""

    name: str
    make_config: Callable[[], Any]
    layers_attr: str = "num_hidden_layers"
    heads_attr: str = "num_attention_heads"
    hidden_attr: str = "hidden_size"
    kv_heads: int | None = None  # grouped-query attention: asserted on the config
    sliding_window: int | None = None  # asserted on the config


class _Ids(TypedDict):
    """The token-id fields every tiny config shares (a TypedDict, so ``**`` checks each against its parameter)."""

    vocab_size: int
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int


def _ids() -> _Ids:
    return {"vocab_size": VOCAB, "bos_token_id": EOS, "eos_token_id": EOS, "pad_token_id": EOS}


def _llama():
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                       num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.3, **_ids())


def _qwen2():
    from transformers import Qwen2Config

    return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                       num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.3, **_ids())


def _mistral():
    from transformers import MistralConfig

    return MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=WINDOW,
                         initializer_range=0.3, **_ids())


def _neox():
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         max_position_embeddings=256, initializer_range=0.3,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
                         **_ids())


def _opt():
    from transformers import OPTConfig

    return OPTConfig(hidden_size=32, ffn_dim=64, word_embed_proj_dim=32, num_hidden_layers=LAYERS,
                     num_attention_heads=HEADS, max_position_embeddings=256, init_std=0.3, **_ids())


def _gemma():
    from transformers import GemmaConfig

    return GemmaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                       num_key_value_heads=1, head_dim=8, max_position_embeddings=256, initializer_range=0.3,
                       **_ids())


def _gemma2():
    from transformers import Gemma2Config

    return Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, initializer_range=0.3,
                        sliding_window=WINDOW, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                        query_pre_attn_scalar=8, **_ids())


def _gptj():
    from transformers import GPTJConfig

    return GPTJConfig(n_embd=32, n_inner=64, n_layer=LAYERS, n_head=HEADS, rotary_dim=4, n_positions=256,
                      initializer_range=0.3, tie_word_embeddings=False, **_ids())


def _falcon():
    from transformers import FalconConfig

    # the classic Falcon layout: rotary positions, multi-query attention, parallel attention and MLP
    return FalconConfig(hidden_size=32, ffn_hidden_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        multi_query=True, new_decoder_architecture=False, alibi=False, max_position_embeddings=256,
                        initializer_range=0.3, **_ids())


def _bloom():
    from transformers import BloomConfig

    # ALiBi positions, computed from the attention mask
    return BloomConfig(hidden_size=32, n_layer=LAYERS, n_head=HEADS, initializer_range=0.3, **_ids())


ARCHS = [
    Arch("llama", _llama, kv_heads=2),
    Arch("qwen2", _qwen2, kv_heads=2),
    Arch("mistral", _mistral, kv_heads=2, sliding_window=WINDOW),
    Arch("gpt_neox", _neox),
    Arch("opt", _opt, hidden_attr="hidden_size"),
    Arch("gemma", _gemma, kv_heads=1),
    Arch("gemma2", _gemma2, kv_heads=2, sliding_window=WINDOW),
    Arch("gptj", _gptj, layers_attr="n_layer", heads_attr="n_head", hidden_attr="n_embd"),
    # found through their ``self_attention`` modules
    Arch("falcon", _falcon),
    Arch("bloom", _bloom, layers_attr="n_layer", heads_attr="n_head"),
]
BY_NAME = {a.name: a for a in ARCHS}


def build(arch: Arch, seed: int = 0) -> inspector.InspectorModel:
    """The tiny random model of ``arch`` with eager attention, its sizes asserted, wrapped for capture."""
    from transformers import AutoModelForCausalLM

    from inspector._fallback import builtin_tokenizer

    tok = builtin_tokenizer()
    assert len(tok) == VOCAB and tok.eos_token_id == EOS and tok.pad_token_id == EOS
    cfg = arch.make_config()
    assert cfg.model_type == arch.name
    # a misspelt size field would silently leave a full-size model
    assert getattr(cfg, arch.layers_attr) == LAYERS and getattr(cfg, arch.heads_attr) == HEADS
    assert getattr(cfg, arch.hidden_attr) == 32 and cfg.vocab_size == VOCAB
    if arch.kv_heads is not None:
        assert cfg.num_key_value_heads == arch.kv_heads < HEADS
    if arch.sliding_window is not None:
        assert cfg.sliding_window == arch.sliding_window
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    assert sum(p.numel() for p in model.parameters()) < 200_000
    return inspector.InspectorModel.from_model(model, tok, name=f"tiny-{arch.name}", random_weights=True)


_MODELS: dict[str, inspector.InspectorModel] = {}


@pytest.fixture(params=[a.name for a in ARCHS])
def arch_model(request) -> inspector.InspectorModel:
    """One tiny model per architecture, built once per test run."""
    name = request.param
    if name not in _MODELS:
        _MODELS[name] = build(BY_NAME[name])
    return _MODELS[name]


@torch.no_grad()
def reference(im: inspector.InspectorModel, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One teacher-forced forward pass over ``ids`` ``[seq]``: ([layer, head, seq, seq], [seq, vocab])."""
    out = im.model(input_ids=ids[None], output_attentions=True, use_cache=False)
    assert len(out.attentions) == LAYERS
    return torch.stack([a[0] for a in out.attentions]).float(), out.logits[0].float()


def assert_exact(im: inspector.InspectorModel, cap: inspector.Capture, greedy: bool = True) -> None:
    """Captured attention and raw logits equal a teacher-forced pass over the final sequence."""
    ref_att, ref_logits = reference(im, cap.token_ids)
    assert cap.attentions is not None and cap.attentions.shape == ref_att.shape == (LAYERS, HEADS, cap.seq_len,
                                                                                     cap.seq_len)
    att_err = (cap.attentions.float() - ref_att).abs().amax(dim=(0, 1, 3))  # [query]
    bad = (att_err > ATT_TOL).nonzero().flatten().tolist()
    assert not bad, (f"{im.name}: attention rows {bad} (prompt has {cap.prompt_len}) differ from the "
                     f"teacher-forced pass by up to {att_err.max().item():.3g}")
    rows = ref_logits[cap.prompt_len - 1 : -1]  # row i produced generated token i
    assert cap.logits is not None and cap.logits.shape == rows.shape
    logit_err = (cap.logits - rows).abs().amax(-1)
    assert logit_err.max().item() <= LOGIT_TOL, f"{im.name}: logits of steps {logit_err.tolist()}"
    if greedy:  # every token is the argmax of the reference logits
        assert torch.equal(cap.generated_ids, rows.argmax(-1))
    exp_lp = torch.log_softmax(rows.double(), -1).gather(1, cap.generated_ids[:, None])[:, 0]
    assert torch.allclose(cap.raw.chosen_logprob.double(), exp_lp, atol=1e-4)


def test_models_are_tiny_and_discriminating(arch_model):
    """Attention is far from uniform and positions matter: the exactness tests below can fail."""
    im = arch_model
    ids = torch.tensor(im.tokenizer(LONG)["input_ids"])
    att, logits = reference(im, ids)
    seq = len(ids)
    uniform = torch.tril(torch.ones(seq, seq)) / torch.arange(1, seq + 1)[:, None]
    assert (att - uniform).abs().max().item() > 0.1
    assert logits.std().item() > 0.05


def test_references_are_sensitive_to_positions(arch_model):
    """Moving the last token's position id by 3 changes its attention row or logits well above the
    tolerances: so a wrong position id in the extra cached step or a padded row cannot pass."""
    im = arch_model
    if im.model.config.model_type == "bloom":
        pytest.skip("BLOOM takes no position ids: its ALiBi positions come from the attention mask")
    ids = torch.tensor(im.tokenizer(LONG)["input_ids"])[None]
    pos = torch.arange(ids.shape[1])[None]
    moved = pos.clone()
    moved[0, -1] += 3
    with torch.no_grad():
        a = im.model(input_ids=ids, position_ids=pos, output_attentions=True, use_cache=False)
        b = im.model(input_ids=ids, position_ids=moved, output_attentions=True, use_cache=False)
    pairs = zip(a.attentions, b.attentions, strict=True)
    diff = max((x[..., -1, :] - y[..., -1, :]).abs().max().item() for x, y in pairs)
    ldiff = (a.logits[0, -1] - b.logits[0, -1]).abs().max().item()
    assert diff > 100 * ATT_TOL or ldiff > 100 * LOGIT_TOL


def test_references_are_sensitive_to_the_padding_mask(arch_model):
    """Three left pads counted as tokens (mask 1) change the last token's logits well above the tolerance:
    so a padded row whose mask or positions were wrong cannot pass as the prompt run alone."""
    im = arch_model
    ids = torch.tensor(im.tokenizer(SHORT)["input_ids"])[None]  # pads and all inside a sliding window
    assert ids.shape[1] + 3 <= WINDOW
    padded = torch.cat([torch.full((1, 3), EOS), ids], dim=1)
    with torch.no_grad():
        alone = im.model(input_ids=ids, use_cache=False).logits[0, -1]
        masked = im.model(input_ids=padded, attention_mask=(padded != EOS).long(), use_cache=False).logits[0, -1]
        unmasked = im.model(input_ids=padded, attention_mask=torch.ones_like(padded), use_cache=False).logits[0, -1]
    assert (unmasked - alone).abs().max().item() > 100 * LOGIT_TOL
    # the reference itself: a correctly masked pad changes nothing (generate's job is to get the mask right)
    assert (masked - alone).abs().max().item() <= LOGIT_TOL


@pytest.mark.parametrize("prompt", [SHORT, LONG], ids=["short", "long"])
def test_greedy_matches_teacher_forced(arch_model, prompt):
    cap = arch_model.generate(prompt, max_new_tokens=NEW, attention_dtype=torch.float32, keep_logits=True)
    assert isinstance(cap, inspector.Capture)
    assert cap.token_ids[: cap.prompt_len].tolist() == list(prompt.encode())
    # random weights may pick EOS early; the sequence still crosses the sliding window
    assert (cap.num_steps, cap.stop_reason) == (NEW, "length") or cap.stop_reason == "eos"
    assert cap.seq_len > WINDOW
    assert_exact(arch_model, cap)


def test_beam_search_each_beam_matches_its_own_forward_pass(arch_model):
    """Beam rows are gathered from per-step rows through ``beam_indices`` (a separate code path)."""
    caps = arch_model.generate([LONG], max_new_tokens=6, num_beams=3, num_return_sequences=3,
                               attention_dtype=torch.float32, keep_logits=True)
    assert len(caps) == 3 and len({tuple(c.token_ids.tolist()) for c in caps}) == 3
    for cap in caps:
        assert cap.seq_len > WINDOW
        assert_exact(arch_model, cap, greedy=False)


def test_left_padded_batch_matches_each_prompt_alone(arch_model):
    im = arch_model
    caps = im.generate([SHORT, LONG], max_new_tokens=NEW, attention_dtype=torch.float32, keep_logits=True)
    assert isinstance(caps, list) and len(caps) == 2
    assert caps[0].prompt_len < caps[1].prompt_len  # the short prompt was left-padded
    for prompt, cap in zip([SHORT, LONG], caps, strict=True):
        assert cap.prompt_text == prompt and cap.token_ids[: cap.prompt_len].tolist() == list(prompt.encode())
        assert_exact(im, cap)
        alone = im.generate(prompt, max_new_tokens=NEW, attention_dtype=torch.float32, keep_logits=True)
        assert torch.equal(alone.token_ids, cap.token_ids)
        assert (alone.attentions - cap.attentions).abs().max().item() <= ATT_TOL
        assert (alone.logits - cap.logits).abs().max().item() <= LOGIT_TOL


def test_tested_architectures_are_listed():
    """The package's list of tested architectures (for messages and the README) is this file's list plus GPT-2."""
    from inspector._architectures import TESTED_MODEL_TYPES

    assert set(TESTED_MODEL_TYPES) == {a.name for a in ARCHS} | {"gpt2"}


def test_sliding_window_is_crossed():
    """The sliding-window models' sequences are longer than the window, so its masking is exercised."""
    seq = len(LONG.encode()) + NEW
    assert seq > 2 * WINDOW
    for arch in ARCHS:
        if arch.sliding_window is not None:
            assert arch.sliding_window == WINDOW
