"""Tiny Hugging Face causal LMs of several architectures, built from configs, for the analysis tests."""

from __future__ import annotations

from typing import TypedDict

import torch
import transformers as tf

V = 53


class _GQA(TypedDict):
    """The grouped-query shape shared by the Llama-style configs."""

    num_attention_heads: int
    num_key_value_heads: int
    hidden_size: int
    intermediate_size: int


def tiny_model(name: str, **extra):
    """A tiny model of one architecture, built from a config (eager attention), with its size asserted."""
    gqa = _GQA(num_attention_heads=4, num_key_value_heads=2, hidden_size=16, intermediate_size=32)
    configs = {
        "gpt2": lambda: tf.GPT2Config(n_layer=2, n_head=2, n_embd=16),
        "gptj": lambda: tf.GPTJConfig(n_layer=2, n_head=2, n_embd=16, rotary_dim=4),
        "neox": lambda: tf.GPTNeoXConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=16,
                                         intermediate_size=32),
        "opt": lambda: tf.OPTConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=16, ffn_dim=32,
                                    word_embed_proj_dim=16),
        "opt_project": lambda: tf.OPTConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=16, ffn_dim=32,
                                            word_embed_proj_dim=8),
        "llama": lambda: tf.LlamaConfig(num_hidden_layers=2, tie_word_embeddings=False, **gqa),
        "mistral": lambda: tf.MistralConfig(num_hidden_layers=2, **gqa),
        "qwen2": lambda: tf.Qwen2Config(num_hidden_layers=2, **gqa),
        "gemma": lambda: tf.GemmaConfig(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                        hidden_size=16, intermediate_size=32, head_dim=8),
        "gemma2": lambda: tf.Gemma2Config(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                          hidden_size=16, intermediate_size=32, head_dim=8,
                                          final_logit_softcapping=2.0),
    }
    config = configs[name]()
    config.vocab_size = V
    config.bos_token_id = config.eos_token_id = config.pad_token_id = 0
    for key, value in extra.items():
        setattr(config, key, value)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tf.AutoModelForCausalLM.from_config(config).eval()
        # Large head weights so soft-capping and the softmax are far from linear.
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(8.0)
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == V
    return model


def forward_hidden(model, ids: torch.Tensor):
    with torch.no_grad():
        out = model(ids.unsqueeze(0), output_hidden_states=True)
    return [h[0] for h in out.hidden_states], out.logits[0].float()


ARCHS = ["gpt2", "gptj", "neox", "opt", "opt_project", "llama", "mistral", "qwen2", "gemma", "gemma2"]
