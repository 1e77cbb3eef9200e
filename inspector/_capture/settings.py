"""Generation settings: every decoding and capture option of one call, its bounds, help text and CLI flag.

:class:`GenerationSettings` is the one list of settings. Each field carries, in its
``metadata``, the help text and the command-line flag (``inspector.cli.capture`` derives
its options from them); a field without a flag is listed, with the reason, in the CLI's
exclusions. Nothing here imports torch, so argument parsing stays quick.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from inspector._capture.decoding import build_generation_config, build_warpers
from inspector._capture.selection import ids_from_text, ids_text, parse_budget, parse_ids, resolve_ids
from inspector._components import ABLATE_HELP, parse_components
from inspector._devices import dtype_name
from inspector._records.layout import ATTENTION_ROWS, HEAD_REDUCE, AttentionLayout

#: Dtypes attention weights can be stored in (the CLI lists them in this order).
ATTENTION_DTYPES = ("float16", "float32", "bfloat16")
#: Bounds on stop strings: matching them needs a table of about vocabulary x (number of strings x
#: longest string) entries, which transformers builds for every call.
MAX_STOP_STRINGS = 32
MAX_STOP_STRING_CHARS = 256
#: Bound on (number of stop strings) x (characters of the longest one): about 200 MB of table for GPT-2.
MAX_STOP_STRING_PRODUCT = 1024

#: How an ablated part's output is replaced: by zeros, or by its mean over the prompt positions.
ABLATE_MODES = ("zero", "mean")
_PATCH_PAIR = re.compile(r"^(\d{1,6}):(\d{1,9})$")

#: The largest seed taken: torch keeps seeds as 64-bit integers (a larger one would wrap, a 2**64 one overflow).
MAX_SEED = 2**63 - 1
_INT_FIELDS = ("max_new_tokens", "num_beams", "num_return_sequences", "top_k", "top_k_logits", "seed", "lens_k")
_BOOL_FIELDS = ("do_sample", "keep_logits", "keep_attention", "truncate_prompt", "keep_hidden_states",
                "keep_value_norms")
_FLOAT_FIELDS = ("temperature", "top_p", "repetition_penalty")


def _opt(default: Any, help: str, flag: str | None = None, **extra: Any) -> Any:
    """A field with its help text and (``flag``) command-line option; ``extra`` goes to the metadata too."""
    return field(default=default, metadata={"help": help, "flag": flag, **extra})


@dataclass(frozen=True)
class GenerationSettings:
    """Every setting of one capture, validated before any model work.

    ``top_k=None`` (or 0) and ``top_p=1.0`` switch those filters off; ``temperature``,
    ``top_k`` and ``top_p`` apply to sampling only. ``top_k_logits`` is how many
    candidates are kept per step (not a decoding setting). No other decoding filter is
    applied: see :meth:`generation_config`.
    """

    max_new_tokens: int = _opt(40, "new tokens to generate at most", "--max-new-tokens")
    do_sample: bool = _opt(False, "sample instead of greedy decoding", "--do-sample")
    temperature: float = _opt(1.0, "sampling: divide the logits by this before top-k and top-p", "--temperature")
    top_k: int | None = _opt(None, "sampling: keep the k most likely tokens", "--top-k", none="off; 0 is off too")
    top_p: float = _opt(1.0, "sampling: nucleus probability mass", "--top-p", off=1.0)
    num_beams: int = _opt(1, "beam search with this many beams", "--num-beams", off=1)
    num_return_sequences: int = _opt(1, "sequences returned per prompt, with sampling or beam search",
                                     "--num-return-sequences")
    repetition_penalty: float = _opt(1.0, "penalise tokens already in the text by this factor",
                                     "--repetition-penalty", off=1.0)
    stop_strings: tuple[str, ...] = _opt(
        (),
        "stop when the text ends with this string (repeatable; use '\\n' for a newline)",
        "--stop-string",
        none="none",
        bounds=f"at most {MAX_STOP_STRINGS} strings of at most {MAX_STOP_STRING_CHARS} characters, and their "
        f"number times the longest one's length at most {MAX_STOP_STRING_PRODUCT}",
    )
    seed: int | None = _opt(None, "seed for sampling (the global random state is restored afterwards)", "--seed",
                            none="none: not reproducible")
    top_k_logits: int = _opt(10, "candidates kept per step", "--top-k-logits")
    keep_logits: bool = _opt(False, "also keep full-vocabulary raw logits", "--keep-logits")
    keep_attention: bool = _opt(True, "keep [layer, head, query, key] attention weights")
    attention_dtype: str = _opt("float16", "dtype attention weights are stored in", "--attention-dtype",
                                choices=ATTENTION_DTYPES)
    truncate_prompt: bool = _opt(False, "drop prompt tokens from the left to fit", "--truncate-prompt")
    keep_hidden_states: bool = _opt(
        False, "also keep the residual stream [layer + 1, seq, d_model] of every position (default: off)",
        "--keep-hidden-states")
    hidden_dtype: str = _opt("float16", "dtype hidden states are stored in", "--hidden-dtype",
                             choices=ATTENTION_DTYPES)
    keep_value_norms: bool = _opt(
        False, "also keep value-vector norms [layer, head, key] for norm-weighted attention (default: off)",
        "--keep-value-norms")
    lens_k: int = _opt(0, "store the logit lens (top-k tokens of every layer and position) with this k; 0 is off",
                       "--lens-k", off=0)
    layers: tuple[int, ...] | slice | str | None = _opt(
        None, "keep attention for these layers only, e.g. 0,3,5-7 (Python: a list of ids or a slice)", "--layers",
        none="all")
    heads: tuple[int, ...] | slice | str | None = _opt(
        None, "keep attention for these heads only, e.g. 0-3 (Python: a list of ids or a slice)", "--heads",
        none="all")
    attention_rows: str = _opt(
        "all", "attention rows kept: all ([layer, head, query, key]) or generated (only the generated tokens' rows, "
        "[layer, head, step, key], without the prompt's P x P block)", "--attention-rows", choices=ATTENTION_ROWS)
    head_reduce: str = _opt(
        "none", "none: one attention map per kept head; mean: their mean (the head axis has size 1)",
        "--head-reduce", choices=HEAD_REDUCE)
    memory_budget: int | str | None = _opt(
        None, "refuse, before generating, a capture estimated to need more than this (bytes, or 4GB, 512MB; off: "
        "no check)", "--memory-budget", none="half of the free device memory")
    ablate: tuple[str, ...] = _opt(
        (), f"switch these parts off for the prompt and every generated step: {ABLATE_HELP}; comma-separated or "
        "repeated (see docs/guides/interventions.md)", "--ablate", none="none")
    ablate_mode: str = _opt(
        "zero", "what an ablated part outputs: zero, or mean (its mean over the prompt's positions, per sequence)",
        "--ablate-mode", choices=ABLATE_MODES)
    patch: tuple[str, ...] = _opt(
        (), "write the source capture's residual stream (the output of block LAYER) at prompt position POS into "
        "this run, as LAYER:POS pairs, comma-separated or repeated; needs --patch-from", "--patch", none="none")
    patch_from: str | None = _opt(None, "the capture file --patch takes its residual stream from", "--patch-from",
                                  none="none")

    def __post_init__(self) -> None:
        stops = self.stop_strings
        if isinstance(stops, str):
            stops = (stops,)
        elif stops is None:
            stops = ()
        elif isinstance(stops, (list, tuple)):
            stops = tuple(stops)
        else:
            raise ValueError(f"stop_strings must be a string or a list of strings, got {type(stops).__name__}")
        object.__setattr__(self, "stop_strings", stops)
        object.__setattr__(self, "ablate", _name_list(self.ablate, "ablate"))
        object.__setattr__(self, "patch", _name_list(self.patch, "patch"))
        if isinstance(self.patch_from, os.PathLike):
            object.__setattr__(self, "patch_from", os.fspath(self.patch_from))
        if self.patch_from is not None and not isinstance(self.patch_from, str):
            raise ValueError(f"patch_from in the settings is the path of a capture file, got "
                             f"{type(self.patch_from).__name__}; pass a Capture to generate(patch_from=...)")
        for name in ("attention_dtype", "hidden_dtype"):
            dtype = getattr(self, name)
            if not isinstance(dtype, str) and type(dtype).__module__ == "torch":
                object.__setattr__(self, name, dtype_name(dtype))
        object.__setattr__(self, "layers", parse_ids(self.layers, "layers"))
        object.__setattr__(self, "heads", parse_ids(self.heads, "heads"))
        object.__setattr__(self, "memory_budget", parse_budget(self.memory_budget))
        self.validate()

    def validate(self) -> None:
        """``ValueError`` saying what to change, for the first setting out of its bounds."""
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int) or (value is None and name in ("top_k", "seed"))):
                what = "an integer or None" if name in ("top_k", "seed") else "an integer"
                raise ValueError(f"{name} must be {what}, got {value!r}")
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be 0 to {MAX_SEED} (2**63 - 1; torch would silently wrap a larger one), "
                             f"got {self.seed}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if self.num_return_sequences < 1:
            raise ValueError(f"num_return_sequences must be an integer >= 1, got {self.num_return_sequences!r}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams})"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError("greedy decoding returns one sequence; set num_return_sequences=1, do_sample or num_beams")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("beam sampling is not supported; use num_beams>1 without do_sample, or do_sample alone")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.do_sample and self.temperature == 0:
            raise ValueError("temperature 0 means greedy decoding; set do_sample=False or a temperature > 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer or None, got {self.top_k!r}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        if self.top_k_logits < 1:
            raise ValueError(f"top_k_logits must be an integer >= 1, got {self.top_k_logits!r}")
        if self.lens_k < 0:
            raise ValueError(f"lens_k must be an integer >= 0 (0 is off), got {self.lens_k!r}")
        for name in ("attention_dtype", "hidden_dtype"):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in ATTENTION_DTYPES:
                raise ValueError(f"{name} must be one of {sorted(ATTENTION_DTYPES)}, got {value!r}")
        check_stop_strings(self.stop_strings)
        for name, choices in (("attention_rows", ATTENTION_ROWS), ("head_reduce", HEAD_REDUCE)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}")
        check_interventions(self)
        if self.keep_value_norms and (self.layers is not None or self.heads is not None or self.head_reduce != "none"):
            raise ValueError("keep_value_norms needs every layer and head kept separately (norm-weighted attention "
                             "weights each head); drop layers/heads/head_reduce, or keep_value_norms")

    def selected(self, num_layers: int, num_heads: int, model: str = "the model") -> GenerationSettings:
        """These settings with ``layers``/``heads`` resolved against the model: sorted ids, ``None`` for all.

        ``ValueError`` naming the model's number of layers or heads when a selection does not fit.
        """
        from dataclasses import replace

        layers = resolve_ids(self.layers, num_layers, "layers", model)  # type: ignore[arg-type]
        heads = resolve_ids(self.heads, num_heads, "heads", model)  # type: ignore[arg-type]
        if layers == self.layers and heads == self.heads:
            return self
        return replace(self, layers=layers, heads=heads)

    @property
    def attention_layout(self) -> AttentionLayout:
        """What the kept attention holds (call on :meth:`selected` settings: slices are not ids yet)."""
        if isinstance(self.layers, (slice, str)) or isinstance(self.heads, (slice, str)):
            raise ValueError("resolve the layer/head selection against the model first (GenerationSettings.selected)")
        return AttentionLayout(self.layers, self.heads, self.attention_rows, self.head_reduce)

    def prompt_token_budget(self, context_length: int) -> int:
        """Prompt tokens that fit a ``context_length``-token context with room for ``max_new_tokens``.

        Raises ``ValueError`` when ``max_new_tokens`` leaves no room at all.
        """
        budget = int(context_length) - self.max_new_tokens
        if budget < 1:
            raise ValueError(
                f"max_new_tokens={self.max_new_tokens} leaves no room for a prompt in the model's "
                f"{context_length}-token context; lower max_new_tokens"
            )
        return budget

    @property
    def patch_pairs(self) -> tuple[tuple[int, int], ...]:
        """``patch`` as ``(layer, position)`` pairs, in the order given."""
        return tuple(_patch_pair(text) for text in self.patch)

    @property
    def intervenes(self) -> bool:
        """Whether this run changes the model's computation (``ablate`` or ``patch``)."""
        return bool(self.ablate or self.patch)

    @property
    def record_hidden_states(self) -> bool:
        """Whether the capture records the residual stream (kept, or needed for the stored lens)."""
        return self.keep_hidden_states or self.lens_k > 0

    @property
    def mode(self) -> str:
        return "beam" if self.num_beams > 1 else ("sample" if self.do_sample else "greedy")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop_strings"] = list(self.stop_strings)
        out["ablate"], out["patch"] = list(self.ablate), list(self.patch)
        out["layers"], out["heads"] = ids_text(self.layers), ids_text(self.heads)  # type: ignore[arg-type]
        out["mode"] = self.mode
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GenerationSettings:
        """The settings :meth:`to_dict` wrote (``mode`` is derived from them and read back as a check).

        Raises:
            ValueError: an unknown entry, a value out of bounds, or a ``mode`` the settings do not give.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - names - {"mode"})
        if unknown:
            raise ValueError(f"unknown generation setting(s) {unknown}; known: {sorted(names)}")
        kw = {k: v for k, v in doc.items() if k in names}
        for name in ("stop_strings", "ablate", "patch"):
            if name in kw:
                kw[name] = tuple(kw[name])
        for name in ("layers", "heads"):
            if name in kw:
                kw[name] = ids_from_text(kw[name])
        settings = cls(**kw)
        if "mode" in doc and doc["mode"] != settings.mode:
            raise ValueError(f"stored mode {doc['mode']!r} differs from the settings' {settings.mode!r}")
        return settings

    def generation_config(self, model: Any, tokenizer: Any) -> Any:
        """The ``GenerationConfig`` for ``generate``: every decoding filter comes from these settings alone.

        See :func:`inspector._capture.decoding.build_generation_config`.
        """
        return build_generation_config(
            model,
            tokenizer,
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            num_beams=self.num_beams,
            num_return_sequences=self.num_return_sequences,
            repetition_penalty=float(self.repetition_penalty),
        )

    def warpers(self) -> list[Any]:
        """Hugging Face's own sampling warpers, in ``generate``'s order (temperature, top-k, top-p).

        They are passed as custom processors, so the recorder placed after them sees
        the scores that sampling actually draws from.
        """
        if not self.do_sample:
            return []
        return build_warpers(float(self.temperature), self.top_k, float(self.top_p))


def check_stop_strings(stop_strings: tuple[Any, ...]) -> None:
    """``ValueError`` unless ``stop_strings`` are non-empty, encodable strings within the bounds above."""
    if any(not isinstance(s, str) or not s for s in stop_strings):
        raise ValueError(f"stop_strings must be non-empty strings, got {list(stop_strings)[:MAX_STOP_STRINGS]!r}")
    if len(stop_strings) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed, got {len(stop_strings)}")
    for i, s in enumerate(stop_strings):
        if len(s) > MAX_STOP_STRING_CHARS:
            raise ValueError(
                f"stop string {i} has {len(s)} characters; at most {MAX_STOP_STRING_CHARS} are allowed"
            )
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"stop string {i} ({s!r}) is not valid text (an unpaired surrogate)") from None
    if stop_strings and len(stop_strings) * max(map(len, stop_strings)) > MAX_STOP_STRING_PRODUCT:
        longest = max(map(len, stop_strings))
        raise ValueError(
            f"{len(stop_strings)} stop strings with the longest of {longest} characters need too much memory to "
            f"match: (number of stop strings) x (longest length) must be at most {MAX_STOP_STRING_PRODUCT}, "
            f"got {len(stop_strings) * longest}; use fewer or shorter stop strings"
        )


def _name_list(value: Any, name: str) -> tuple[str, ...]:
    """``value`` (a string, or a list of strings, each possibly comma-separated) as a tuple of stripped items."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{name} must be a string or a list of strings, got {type(value).__name__}")
    out: list[str] = []
    for item in items:
        if name == "patch" and isinstance(item, (list, tuple)) and len(item) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in item):
            item = f"{item[0]}:{item[1]}"  # a (layer, position) pair
        if not isinstance(item, str):
            raise ValueError(f"{name} entries must be strings, got {item!r}")
        out.extend(part.strip() for part in item.split(",") if part.strip())
    return tuple(out)


def _patch_pair(text: str) -> tuple[int, int]:
    match = _PATCH_PAIR.match(text.replace(" ", ""))
    if match is None:
        raise ValueError(f"patch entry {text!r} is not LAYER:POSITION (e.g. 3:5, the output of block 3 at prompt "
                         "token 5)")
    return int(match.group(1)), int(match.group(2))


def check_interventions(settings: GenerationSettings) -> None:
    """``ValueError`` for an ``ablate`` name, ``ablate_mode`` or ``patch`` entry that is malformed.

    The layers and heads are checked against the model in :func:`inspector._capture.interventions.plan`.
    """
    if settings.ablate_mode not in ABLATE_MODES:
        raise ValueError(f"ablate_mode must be one of {list(ABLATE_MODES)}, got {settings.ablate_mode!r}")
    parse_components(settings.ablate, 10**6, 10**6)  # the forms alone (numbers have at most 6 digits)
    pairs = settings.patch_pairs
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"patch names a (layer, position) pair twice: {list(settings.patch)}")
    if settings.patch_from is not None and not settings.patch:
        raise ValueError("patch_from is set but patch names no LAYER:POSITION pair; add patch (CLI: --patch 3:5)")
    if settings.patch_from is not None and not settings.patch_from.strip():
        raise ValueError("patch_from is empty; give the path of a saved capture")
