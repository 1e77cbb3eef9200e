"""One test per transformers internal the package relies on (all of them live in ``inspector._compat``).

Each checks the assumption against transformers itself, so an upgrade that changes one fails here, by
name, with what to look at; the numbers are checked against plain model calls or hand computations.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.generation import stopping_criteria as sc

from inspector import _compat

PROMPTS = ["User: hey how are you?\nAgent:", "Hi"]


def tiny_gpt2(**extra) -> GPT2LMHeadModel:
    config = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=40, n_positions=64, bos_token_id=0,
                        eos_token_id=0, **extra)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def test_dynamic_layer_fields_and_update_concatenate():
    layer = DynamicLayer()
    assert not layer.is_initialized and layer.keys is None, (
        "transformers' DynamicLayer changed: ReservedLayer expects is_initialized False and keys None before "
        "the first update")
    k = torch.randn(2, 3, 4, 5)
    keys, values = layer.update(k, -k)
    assert layer.is_initialized and torch.equal(keys, k) and torch.equal(values, -k) and layer.keys is keys
    k2 = torch.randn(2, 3, 1, 5)
    keys, _ = layer.update(k2, -k2)
    assert torch.equal(keys, torch.cat([k, k2], dim=-2)), (
        "DynamicLayer.update no longer concatenates along dim -2: ReservedLayer writes in place on that basis")
    layer.crop(-2)
    assert torch.equal(layer.keys, k[:, :, :3]), "DynamicLayer.crop(-n) no longer drops the last n positions"
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys, k[1:, :, :3]), "DynamicLayer.batch_select_indices no longer selects rows"
    assert layer.is_sliding is False, "DynamicLayer.is_sliding is gone (croppable_dynamic_cache reads it)"


def test_supports_default_dynamic_cache_and_a_given_cache_is_used(byte_tiny):
    model = byte_tiny.model
    assert hasattr(type(model), "_supports_default_dynamic_cache"), (
        "transformers removed PreTrainedModel._supports_default_dynamic_cache: find its replacement for "
        "inspector._compat.supports_default_dynamic_cache")
    assert _compat.supports_default_dynamic_cache(model) is True
    assert _compat.supports_default_dynamic_cache(object()) is False
    cache = _compat.dynamic_cache_with_reserved_layers(model, 64)
    assert cache is not None and len(cache.layers) == byte_tiny.num_layers, (
        "DynamicCache(config=...) no longer builds one DynamicLayer per layer")
    assert all(type(layer) is _compat.ReservedLayer for layer in cache.layers)
    enc = byte_tiny.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=3, do_sample=False, return_dict_in_generate=True,
                             pad_token_id=byte_tiny.tokenizer.pad_token_id, cache=cache)
    assert _compat.generated_cache(out) is cache, "generate no longer writes into the cache it is given"
    # the last token's keys are never written: prompt + 3 new tokens - 1
    assert cache.get_seq_length() == enc["input_ids"].shape[1] + 2


def test_generated_cache_is_the_dynamic_cache_of_generate_and_of_a_forward(byte_tiny):
    enc = byte_tiny.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    width = enc["input_ids"].shape[1]
    with torch.no_grad():
        out = byte_tiny.model.generate(**enc, max_new_tokens=2, do_sample=False, return_dict_in_generate=True,
                                       pad_token_id=byte_tiny.tokenizer.pad_token_id)
        fwd = byte_tiny.model(**enc, use_cache=True)
    cache = _compat.generated_cache(out)
    assert isinstance(cache, DynamicCache), f"generate's output holds its cache elsewhere now: {type(out)}"
    assert cache.get_seq_length() == width + 1
    assert isinstance(_compat.generated_cache(fwd), DynamicCache) and _compat.generated_cache(fwd).get_seq_length() \
        == width


def test_croppable_dynamic_cache_full_attention_only():
    model = tiny_gpt2()
    cache = DynamicCache(config=model.config)
    assert _compat.croppable_dynamic_cache(cache)
    assert not _compat.croppable_dynamic_cache(object())
    from transformers import MistralConfig

    sliding = DynamicCache(config=MistralConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                                num_key_value_heads=1, intermediate_size=32, sliding_window=4))
    assert any(isinstance(layer, DynamicLayer) and layer.is_sliding for layer in sliding.layers), (
        "a sliding-window config no longer gives sliding DynamicCache layers (is_sliding)")
    assert not _compat.croppable_dynamic_cache(sliding)


def test_stop_string_cache_is_pruned_to_the_newest_table(byte_tiny):
    cache = getattr(sc, "STOP_STRING_EMBEDDING_CACHE", None)
    assert cache is not None and hasattr(cache, "popitem"), (
        "transformers.generation.stopping_criteria.STOP_STRING_EMBEDDING_CACHE is gone or no longer an "
        "OrderedDict: inspector._compat.stop_string_criteria prunes it")
    saved = list(cache.items())
    cache.clear()
    try:
        tok = byte_tiny.tokenizer
        for strings in (["ab"], ["cd"], ["ef"]):
            _compat.stop_string_criteria(tok, strings)
        assert len(cache) == 1
        sc.StopStringCriteria(tok, ["ef"])  # the same strings: found in the cache, nothing added
        assert len(cache) == 1, "the stop-string cache no longer keys on the strings (or no longer caches)"
        sc.StopStringCriteria(tok, ["gh"])
        assert len(cache) == 2, "transformers' StopStringCriteria no longer fills STOP_STRING_EMBEDDING_CACHE"
    finally:
        cache.clear()
        cache.update(saved)


def test_sampling_warpers_match_hand_computations():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    ids = torch.zeros((1, 1), dtype=torch.long)
    (temp,) = _compat.sampling_warpers(2.0, None, 1.0)
    assert torch.allclose(temp(ids, scores.clone()), scores / 2)
    (top_k,) = _compat.sampling_warpers(1.0, 2, 1.0)
    got = top_k(ids, scores.clone())
    assert torch.equal(got[0, :2], scores[0, :2]) and bool(torch.isinf(got[0, 2:]).all())
    (top_p,) = _compat.sampling_warpers(1.0, 0, 0.7)  # 0.5 + 0.3 = 0.8 >= 0.7: two tokens stay
    got = top_p(ids, scores.clone())
    assert torch.equal(got[0, :2], scores[0, :2]) and bool(torch.isinf(got[0, 2:]).all())
    names = [type(w).__name__ for w in _compat.sampling_warpers(0.5, 3, 0.9)]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
    assert _compat.sampling_warpers(1.0, None, 1.0) == []


def test_output_layer_input_sees_the_kept_hidden_states(byte_tiny):
    model = byte_tiny.model
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]])
    with torch.no_grad():
        full = model(input_ids=ids).logits  # [2, 5, vocab]
        seen: list[tuple[int, ...]] = []

        def pick(hidden: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(hidden.shape))
            return hidden[[0, 1], [1, 2]][None]  # kept positions 2..4: (row 0, 3), (row 1, 4)

        with _compat.output_layer_input(model, pick):
            got = model(input_ids=ids, logits_to_keep=3).logits
        with _compat.output_layer_input(model, lambda hidden: hidden[..., :0, :]):
            none = model(input_ids=ids, logits_to_keep=1).logits
        after = model(input_ids=ids).logits
    assert seen == [(2, 3, 32)], (
        "the output layer's first argument is no longer the hidden states [batch, kept positions, d_model] "
        f"after logits_to_keep: saw {seen}")
    assert torch.allclose(got[0, 0], full[0, 3], atol=1e-5) and torch.allclose(got[0, 1], full[1, 4], atol=1e-5)
    assert none.shape[1] == 0
    assert torch.equal(after, full), "the hook outlived its block"


def test_attn_implementation_reads_and_mark_eager_sets_the_private_field(tmp_path):
    model = tiny_gpt2()
    model.save_pretrained(tmp_path)
    eager = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    assert _compat.attn_implementation(eager.config) == "eager", (
        "config._attn_implementation no longer names the attention implementation a model runs")
    eager.set_attn_implementation("sdpa")
    assert _compat.attn_implementation(eager.config) == "sdpa"
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=40, bos_token_id=0, eos_token_id=0)
    _compat.mark_eager(config)
    built = GPT2LMHeadModel(config).eval()
    assert built.config._attn_implementation == "eager"
    with torch.no_grad():
        att = built(input_ids=torch.tensor([[1, 2, 3]]), output_attentions=True).attentions
    # eager attention hands back weights: each causal row a distribution
    assert att[0] is not None and torch.allclose(att[0].sum(-1), torch.ones(1, 2, 3))


def test_name_or_path_and_commit_hash_of_a_local_folder(tmp_path):
    tiny_gpt2().save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert _compat.name_or_path(loaded.config) == str(tmp_path), (
        "config._name_or_path no longer holds the folder from_pretrained was given")
    assert _compat.name_or_path(tiny_gpt2().config) == ""
    # transformers 5 stopped setting config._commit_hash (the revision argument is resolved instead); if it
    # comes back, check that it is the commit and the recorded revision can use it again
    assert not hasattr(loaded.config, "_commit_hash"), "config._commit_hash is set again: see commit_hash()"
    assert _compat.commit_hash(loaded.config) is None


def test_declared_attention_output_is_the_attention_weights(byte_tiny):
    model = byte_tiny.model
    declared = _compat.declared_attention_output(model)
    assert declared is not None, (
        "the model no longer declares _can_record_outputs['attentions']; find_attention_modules falls back to "
        "module names")
    target, index, layer_name = declared
    modules = [m for name, m in model.named_modules()
               if isinstance(m, target) and (layer_name is None or name.endswith(layer_name))]
    assert len(modules) == byte_tiny.num_layers
    grabbed: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _a, out: grabbed.append(out[index])) for m in modules]
    try:
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([[3, 4, 5, 6]]), output_attentions=True).attentions
    finally:
        for h in hooks:
            h.remove()
    assert len(grabbed) == len(ref) and all(torch.equal(g, r) for g, r in zip(grabbed, ref, strict=True)), (
        "output index of the declared attention module is not the attention weights output_attentions returns")


def test_attention_input_is_the_normed_residual_stream(byte_tiny):
    model = byte_tiny.model
    block = model.transformer.h[1]
    grabbed: list[torch.Tensor] = []
    hook = block.attn.register_forward_pre_hook(
        lambda _m, args, kwargs: grabbed.append(_compat.attention_input(args, kwargs)), with_kwargs=True)
    ids = torch.tensor([[7, 8, 9, 10]])
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
    finally:
        hook.remove()
    # GPT-2: layer 1's attention sees ln_1 of the residual stream entering layer 1
    want = block.ln_1(out.hidden_states[1])
    assert len(grabbed) == 1 and torch.allclose(grabbed[0], want, atol=1e-6), (
        "an attention module is no longer called with its hidden states as hidden_states= or first argument")


def test_cache_kwarg_names_the_argument_forward_uses(byte_tiny):
    model = byte_tiny.model
    name = _compat.cache_kwarg(model)
    assert name == "cache", f"GPT-2's forward takes its KV cache as {name!r} now; check generate's handling"
    ids = torch.tensor([[7, 8, 9]])
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids, use_cache=True, **{name: cache})
    assert cache.get_seq_length() == 3, f"forward ignored the cache passed as {name!r}"


def test_no_hub_agent_registry_fetch_leaves_huggingface_hub_nothing_to_ask(monkeypatch, tmp_path):
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent, _http

    monkeypatch.setattr(_detect_agent, "_registry", None)  # as in a fresh process
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "no-cached-registry.json"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    requests = []

    def get_session():
        requests.append(1)
        raise OSError("net")

    monkeypatch.setattr(_http, "get_session", get_session)
    _detect_agent.detect_agent()
    assert requests, "huggingface_hub no longer fetches its agent registry: no_hub_agent_registry_fetch may go"
    monkeypatch.setattr(_detect_agent, "_registry", None)
    requests.clear()
    _compat.no_hub_agent_registry_fetch()
    assert _detect_agent._registry is not None
    _detect_agent.detect_agent()
    assert requests == []  # the registry is settled without a request


def test_no_weight_loading_bar_turns_the_bar_off_and_back_on():
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    with _compat.no_weight_loading_bar():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with _compat.no_weight_loading_bar():
            pass
        assert not hf_logging.is_progress_bar_enabled()  # left as it was: off
    finally:
        hf_logging.enable_progress_bar()
