"""Tiny Llama GGUF files written from a seeded Hugging Face model, for the GGUF loading tests.

:func:`write_tiny_llama_gguf` builds a small random ``LlamaForCausalLM`` from a config and writes it with
the ``gguf`` package's ``GGUFWriter`` the way llama.cpp's converter does (tensor names, metadata keys, the
rotary Q/K row permutation), with a byte-level BPE tokenizer in the file. The model it returns is the
independent reference the loaded copy is compared with; :func:`reference_tokenizer` is the tokenizer the
file describes, built directly with the ``tokenizers`` library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

#: The special token ending a text (bos, eos and padding in the tiny files).
EOS = "<|endoftext|>"
#: A few merges on top of the 256 byte tokens, in the byte alphabet (``Ġ`` is the byte of a space).
MERGES: tuple[tuple[str, str], ...] = (("a", "b"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("ab", "c"))
#: A chat template carried by the tiny files (the tokenizer must keep it).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
#: The tiny model's sizes: 2 layers, 4 query heads sharing 2 key/value heads, width 32 (head size 8).
TINY_SIZES: dict[str, int] = {
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}


def byte_alphabet() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte (the byte-level BPE alphabet), byte value -> character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def tiny_vocab() -> list[str]:
    """The tiny files' tokens in id order: the 256 byte tokens (id = byte value), one token per merge, then
    :data:`EOS`."""
    alphabet = byte_alphabet()
    return [alphabet[b] for b in range(256)] + [a + b for a, b in MERGES] + [EOS]


def reference_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer the tiny files describe, built with ``tokenizers`` (byte-level BPE, GPT-2's split)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(tiny_vocab())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(MERGES)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS)


def tiny_llama(seed: int = 0, **sizes: int) -> LlamaForCausalLM:
    """A random ``LlamaForCausalLM`` (float32, eager attention, untied output head) seeded by ``seed``.

    Norm weights are random too (not ones), so that a norm read from the wrong tensor shows.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(tiny_vocab())
    eos = vocab - 1
    settings: dict[str, Any] = {"rope_theta": 10000.0, "attn_implementation": "eager", **TINY_SIZES, **sizes}
    config = LlamaConfig(vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                         tie_word_embeddings=False, rms_norm_eps=1e-5, **settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).float()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
    return model.eval()


def llama_cpp_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's row permutation of a Q or K projection ``[heads * head_dim, width]``.

    Within each head the rotary halves are interleaved: row ``i`` of the first half and row ``i`` of the
    second become rows ``2i`` and ``2i + 1`` (llama.cpp rotates adjacent pairs; Hugging Face rotates halves).
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _gguf_tensors(model: LlamaForCausalLM, permute: bool = True) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's tensor names, Q and K rows permuted (unless not ``permute``)."""
    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    sd = {k: v.detach().to(torch.float32).numpy().copy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"],
           "output.weight": sd["lm_head.weight"]}
    names = {"input_layernorm": "attn_norm", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(cfg.num_hidden_layers):
        hf = f"model.layers.{i}."
        q, k = sd[hf + "self_attn.q_proj.weight"], sd[hf + "self_attn.k_proj.weight"]
        out[f"blk.{i}.attn_q.weight"] = llama_cpp_permute(q, heads, heads) if permute else q
        out[f"blk.{i}.attn_k.weight"] = llama_cpp_permute(k, heads, kv_heads) if permute else k
        for hf_name, gguf_name in names.items():
            out[f"blk.{i}.{gguf_name}.weight"] = sd[f"{hf}{hf_name}.weight"]
    return out


def write_tiny_llama_gguf(path: str | Path, seed: int = 0, file_type: int | None = 0, name: str = "tiny-llama",
                          permute: bool = True, **sizes: int) -> LlamaForCausalLM:
    """Write a tiny Llama GGUF file (F32 tensors, tokenizer included) to ``path``; return its reference model.

    Args:
        path: the ``.gguf`` file to write.
        seed: seed of the random weights (the same seed writes the same file, byte for byte).
        file_type: ``general.file_type`` (0: ``ALL_F32``); ``None`` leaves the key out.
        name: ``general.name``.
        permute: apply llama.cpp's Q/K row permutation (``False`` writes a file that loads wrongly: a check
            that the tests can tell).
        sizes: overrides of :data:`TINY_SIZES`.

    Returns:
        The float32 ``LlamaForCausalLM`` the tensors came from (eager attention).
    """
    import gguf

    model = tiny_llama(seed, **sizes)
    cfg = model.config
    tokens = tiny_vocab()
    eos = len(tokens) - 1
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads or cfg.num_attention_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(_rope_theta(cfg))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(len(tokens))
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * eos + [gguf.TokenType.CONTROL])
    writer.add_token_merges([f"{a} {b}" for a, b in MERGES])
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    writer.add_pad_token_id(eos)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for tensor_name, data in _gguf_tensors(model, permute).items():
        writer.add_tensor(tensor_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
