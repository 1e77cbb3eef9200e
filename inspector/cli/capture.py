"""``inspector capture`` and ``inspector doctor``; shared model and generation options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from inspector._atomic import check_writable
from inspector._locations import MODEL_NAME_HELP

DEFAULT_PROMPT = "User: hey how are you? \nAgent:"
#: Where commands write when not told otherwise: one folder that .gitignore covers, so trying the
#: README's commands in a checkout leaves no untracked files in the repository root.
OUTPUT_DIR = "out"
DEFAULT_CAPTURE_OUT = f"{OUTPUT_DIR}/captures/capture.safetensors"


def add_model_args(parser: argparse.ArgumentParser, model_default: str = "gpt2") -> None:
    """``--model``, ``--random-weights``, ``--device``, ``--dtype``, ``--trust-remote-code``."""
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=model_default, help=f"{MODEL_NAME_HELP} (default: %(default)s)")
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="build the model from the folder's config.json with random weights (text is meaningless)",
    )
    g.add_argument("--device", default="auto",
                   help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: %(default)s)")
    g.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="model dtype; float16 needs a GPU (default: float32)")
    g.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model's own code from its folder or hub repository (only for code you have read and "
        "trust; default: off)",
    )


#: GenerationSettings fields without a command-line flag, and why (a test checks every other field has one).
NOT_FLAGS: dict[str, str] = {
    # `inspector capture` always keeps attention; `inspector run` chooses with --attention full/summary/none.
    "keep_attention": "set by each command (inspector run --attention)",
}
# The argparse type of each field annotation (``from __future__ import annotations`` keeps them as text).
_ARG_TYPES: dict[str, Any] = {"int": int, "int | None": int, "float": float, "str": None,
                              "tuple[int, ...] | slice | str | None": str, "int | str | None": str, "str | None": str}


def _default_text(f: Any) -> str:
    if f.default is None:
        text: str = f.metadata.get("none", "none")
        return text
    return "%(default)s"


#: The selective-capture flags (``selection=False`` leaves them out, for commands whose outputs need everything).
SELECTION_FLAGS = ("layers", "heads", "attention_rows", "head_reduce")


def add_generation_args(parser: argparse.ArgumentParser, max_new_tokens: int = 40, truncate: bool = True,
                        selection: bool = True) -> None:
    """Decoding and capture options, one per :class:`inspector.GenerationSettings` field with a flag.

    Flags, help texts and defaults come from the fields' metadata. ``max_new_tokens`` is this
    parser's default for ``--max-new-tokens``; ``truncate=False`` leaves out ``--truncate-prompt``
    (for commands that fit prompts themselves); ``selection=False`` leaves out :data:`SELECTION_FLAGS`.
    """
    from dataclasses import fields

    from inspector._capture.settings import GenerationSettings

    g = parser.add_argument_group("generation")
    for f in fields(GenerationSettings):
        flag = f.metadata.get("flag")
        if flag is None or (f.name == "truncate_prompt" and not truncate) or (
                f.name in SELECTION_FLAGS and not selection):
            continue
        help_text = f.metadata["help"]
        if "bounds" in f.metadata:
            help_text += f"; {f.metadata['bounds']}"
        if f.type == "bool":
            g.add_argument(flag, action="store_true", help=help_text)
        elif f.type == "tuple[str, ...]":
            g.add_argument(flag, dest=f.name, action="append", default=None,
                           help=f"{help_text} (default: {f.metadata.get('none', 'none')})")
        else:
            default = max_new_tokens if f.name == "max_new_tokens" else f.default
            choices = list(f.metadata["choices"]) if "choices" in f.metadata else None
            g.add_argument(flag, type=_ARG_TYPES[str(f.type)], default=default, choices=choices,
                           help=f"{help_text} (default: {_default_text(f)})")


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """A validated :class:`inspector.GenerationSettings` from options added by :func:`add_generation_args`.

    A setting whose option the parser does not have keeps its default; ``overrides`` win.
    """
    from dataclasses import fields

    from inspector._capture.settings import GenerationSettings

    values: dict[str, Any] = {}
    for f in fields(GenerationSettings):
        if f.metadata.get("flag") is None or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if f.name == "stop_strings":
            value = tuple(_unescape(_text_arg(s, "--stop-string")) for s in (value or ()))
        values[f.name] = value
    values.update(overrides)
    return GenerationSettings(**values)


def _text_arg(value: str, flag: str) -> str:
    """``value`` unless it holds bytes that were not valid text on the command line (``ValueError``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{flag} holds bytes that are not valid UTF-8 text ({value[exc.start]!r} at character {exc.start}); "
            "pass the text in UTF-8"
        ) from None
    return value


def prompt_arg(value: str, flag: str = "--prompt") -> str:
    """The prompt given as ``flag``, with ``\\n`` unescaped; ``ValueError`` when empty (checked before any load)."""
    prompt = _unescape(_text_arg(value, flag))
    if not prompt.strip():
        raise ValueError(f"{flag} is empty; give some text to continue, e.g. {flag} 'User: hi\\nAgent:'")
    return prompt


def load_model_from_args(args: argparse.Namespace) -> Any:
    from inspector._model import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype, random_weights=args.random_weights,
                      trust_remote_code=getattr(args, "trust_remote_code", False))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "capture",
        help="generate from one prompt, print the per-step table and save the capture",
        description="Generate from one prompt with capture; print the per-step table; write the capture file.",
    )
    add_model_args(p)
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt text; '\\n' is a newline (default: %(default)r)")
    p.add_argument("--continuation", default=None, metavar="TEXT",
                   help="score this text after the prompt by teacher forcing instead of generating (decoding "
                        "options are then unused); start it with a space after a cue like 'Agent:'; '\\n' is a "
                        "newline (default: none, generate)")
    add_generation_args(p)
    p.add_argument("--out", default=DEFAULT_CAPTURE_OUT, help="capture file to write (default: %(default)s)")
    p.set_defaults(func=run_capture)

    d = sub.add_parser(
        "doctor",
        help="compare a short capture on the CPU and on a device (parity, NaN check, timings)",
        description="Run the same short capture on the CPU and on --device and report max differences.",
    )
    d.add_argument("--model", default="gpt2", help=f"{MODEL_NAME_HELP} (default: %(default)s)")
    d.add_argument("--random-weights", action="store_true",
                   help="build the model from the folder's config.json with random weights (default: off)")
    d.add_argument("--device", default="auto", help="device to compare with the CPU (default: %(default)s)")
    d.add_argument("--prompt", default=DEFAULT_PROMPT,
                   help="prompt of the compared capture; '\\n' is a newline (default: %(default)r)")
    d.add_argument("--max-new-tokens", type=int, default=16,
                   help="tokens generated on each device (default: %(default)s)")
    d.add_argument("--json", dest="json_out", default=None,
                   help="also write the report as JSON to this file (default: print only)")
    d.set_defaults(func=run_doctor)


def run_capture(args: argparse.Namespace) -> int:
    from inspector._report import capture_report
    from inspector._sequence_files import sequence_path

    settings = settings_from_args(args)  # everything validated before the model loads
    prompt = prompt_arg(args.prompt)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors, got {out}")
    check_writable(out, "--out", example="capture.safetensors")
    continuation = None if args.continuation is None else _unescape(_text_arg(args.continuation, "--continuation"))
    if continuation is not None and not continuation:
        raise ValueError("--continuation is empty; give the text to score, or leave the option out to generate")
    if continuation is not None and not prompt.strip():
        raise ValueError("--prompt is empty; give some text to condition the continuation on")
    selective = [f"--{n.replace('_', '-')}" for n in SELECTION_FLAGS
                 if getattr(args, n, None) not in (None, "all", "none")]
    if continuation is not None and selective:
        raise ValueError(f"{', '.join(selective)} apply to generation; scoring a --continuation keeps every layer, "
                         "head and row: leave them out")
    if continuation is not None and settings.intervenes:
        raise ValueError("--ablate and --patch apply to generation; leave them out when scoring a --continuation")
    source = None
    if settings.patch_from is not None:  # read before the model loads: a bad file is refused first
        from inspector._store import load_capture

        source = load_capture(settings.patch_from)
    elif settings.patch:
        raise ValueError("--patch needs --patch-from CAPTURE, the capture file whose residual stream is written in")
    model = load_model_from_args(args)
    print(f"loaded {model.describe()}", file=sys.stderr)
    if continuation is not None:
        result = model.score(prompt, continuation, top_k_logits=settings.top_k_logits, keep_logits=settings.keep_logits,
                          attention_dtype=settings.attention_dtype)
    else:
        result = model.generate([prompt], settings=settings, patch_from=source)
    captures = result if isinstance(result, list) else [result]
    out.parent.mkdir(parents=True, exist_ok=True)
    for i, cap in enumerate(captures):
        path = sequence_path(out, i, len(captures))
        print(capture_report(cap))
        cap.save(path)
        print(f"\nwrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    import json

    from inspector._doctor import format_parity, parity_check

    prompt = prompt_arg(args.prompt)  # validated before the model loads
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.json_out:
        check_writable(args.json_out, "--json", example="doctor.json")
    report = parity_check(
        args.model,
        device=args.device,
        random_weights=args.random_weights,
        prompt=prompt,
        max_new_tokens=args.max_new_tokens,
    )
    print(format_parity(report))
    if args.json_out:
        from inspector._atomic import write_text_atomic

        write_text_atomic(args.json_out, json.dumps(report, indent=2))
    return 0 if report["ok"] else 1
