"""``inspector capture`` and ``inspector doctor``; shared model and generation options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_PROMPT = "User: hey how are you? \nAgent:"


def add_model_args(parser: argparse.ArgumentParser, model_default: str = "gpt2") -> None:
    """``--model``, ``--random-weights``, ``--device``, ``--dtype``."""
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=model_default, help="hub id or local folder (default: %(default)s)")
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="build the model from the folder's config.json with random weights (text is meaningless)",
    )
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    g.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="model dtype")


def add_generation_args(parser: argparse.ArgumentParser, max_new_tokens: int = 40, truncate: bool = True) -> None:
    """Decoding and capture options, mirroring :class:`inspector.GenerationSettings`.

    ``truncate=False`` leaves out ``--truncate-prompt`` (for commands that fit prompts themselves).
    """
    g = parser.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=None, help="sampling: keep the k most likely tokens")
    g.add_argument("--top-p", type=float, default=1.0, help="sampling: nucleus probability mass")
    g.add_argument("--num-beams", type=int, default=1)
    g.add_argument("--num-return-sequences", type=int, default=1)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument(
        "--stop-string",
        dest="stop_strings",
        action="append",
        default=None,
        help="stop when the text ends with this string (repeatable; use '\\n' for a newline)",
    )
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--top-k-logits", type=int, default=10, help="candidates kept per step")
    g.add_argument("--keep-logits", action="store_true", help="also keep full-vocabulary raw logits")
    g.add_argument("--attention-dtype", default="float16", choices=["float16", "float32", "bfloat16"])
    if truncate:
        g.add_argument("--truncate-prompt", action="store_true", help="drop prompt tokens from the left to fit")


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """A validated :class:`inspector.GenerationSettings` from parsed options."""
    from inspector.capture import GenerationSettings

    values = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        num_return_sequences=args.num_return_sequences,
        repetition_penalty=args.repetition_penalty,
        stop_strings=tuple(_unescape(s) for s in (args.stop_strings or ())),
        seed=args.seed,
        top_k_logits=args.top_k_logits,
        keep_logits=args.keep_logits,
        attention_dtype=args.attention_dtype,
        truncate_prompt=getattr(args, "truncate_prompt", False),
    )
    values.update(overrides)
    return GenerationSettings(**values)


def load_model_from_args(args: argparse.Namespace) -> Any:
    from inspector.model import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype, random_weights=args.random_weights)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capture",
        help="generate from one prompt, print the per-step table and save the capture",
        description="Generate from one prompt with capture; print the per-step table; write the capture file.",
    )
    add_model_args(p)
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt text; '\\n' is a newline (default: %(default)r)")
    add_generation_args(p)
    p.add_argument("--out", default="captures/capture.safetensors", help="capture file to write (default: %(default)s)")
    p.set_defaults(func=run_capture)

    d = sub.add_parser(
        "doctor",
        help="compare a short capture on the CPU and on a device (parity, NaN check, timings)",
        description="Run the same short capture on the CPU and on --device and report max differences.",
    )
    d.add_argument("--model", default="gpt2", help="hub id or local folder (default: %(default)s)")
    d.add_argument("--random-weights", action="store_true")
    d.add_argument("--device", default="auto", help="device to compare with the CPU (default: %(default)s)")
    d.add_argument("--prompt", default=DEFAULT_PROMPT)
    d.add_argument("--max-new-tokens", type=int, default=16)
    d.add_argument("--json", dest="json_out", default=None, help="also write the report as JSON to this file")
    d.set_defaults(func=run_doctor)


def run_capture(args: argparse.Namespace) -> int:
    from inspector.report import capture_report

    settings = settings_from_args(args)  # validated before the model loads
    prompt = _unescape(args.prompt)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors, got {out}")
    im = load_model_from_args(args)
    print(f"loaded {im.describe()}", file=sys.stderr)
    result = im.generate(prompt, settings=settings)
    captures = result if isinstance(result, list) else [result]
    out.parent.mkdir(parents=True, exist_ok=True)
    for i, cap in enumerate(captures):
        path = out if len(captures) == 1 else out.with_name(f"{out.stem}-{i}{out.suffix}")
        print(capture_report(cap))
        cap.save(path)
        print(f"\nwrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    import json

    from inspector.doctor import format_parity, parity_check

    report = parity_check(
        args.model,
        device=args.device,
        random_weights=args.random_weights,
        prompt=_unescape(args.prompt),
        max_new_tokens=args.max_new_tokens,
    )
    print(format_parity(report))
    if args.json_out:
        from inspector._atomic import write_text_atomic

        write_text_atomic(args.json_out, json.dumps(report, indent=2))
    return 0 if report["ok"] else 1
