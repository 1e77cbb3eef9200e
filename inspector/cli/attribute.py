"""``inspector attribute``: attribute each generated token of a capture to the tokens before it; save JSON."""

from __future__ import annotations

import argparse
from typing import Any

# Methods that explain the chosen token's logit by the model's parts instead of the context.
_LOGIT = "logit"
# The options of context attribution only (their argparse destinations).
_CONTEXT_ONLY = ("steps", "rule", "tolerance", "max_steps", "baseline")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from inspector.analysis.choices import (
        ATTRIBUTION_TARGETS,
        BASELINES,
        CONTEXT_METHODS,
        IG_MAX_STEPS,
        IG_RULE,
        IG_RULES,
        IG_STEPS,
        IG_TOLERANCE,
    )

    p = sub.add_parser(
        "attribute",
        help="how much each earlier token moved each generated token's log-probability (gradients, occlusion)",
        description=(
            "Run the capture's model over the capture's tokens and attribute the log-probability of every "
            "generated token to every token before it (prompt and earlier reply), in nats: input x gradient, "
            "integrated gradients (from the zero embedding) or occlusion (one token at a time set to the "
            f"baseline). With --method {_LOGIT}: direct logit attribution to the model's heads and MLPs instead. "
            "Writes a JSON file (scores [step][position], null where a position is no input of the step)."
        ),
    )
    p.add_argument("capture", metavar="CAPTURE", help="a capture file (.safetensors)")
    p.add_argument("--method", choices=(*CONTEXT_METHODS, _LOGIT), default="integrated_gradients",
                   help="attribution method (default: %(default)s)")
    p.add_argument("--steps", type=int, default=IG_STEPS,
                   help="integrated gradients: quadrature nodes, the first ones of --rule adaptive, at least 1 "
                        "(default: %(default)s)")
    p.add_argument("--rule", choices=IG_RULES, default=IG_RULE,
                   help="integrated gradients: quadrature rule; adaptive adds nodes where a token's scores do not "
                        "yet sum to its change of log-probability within --tolerance (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=IG_TOLERANCE,
                   help="--rule adaptive: the relative completeness error a token may keep (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=IG_MAX_STEPS,
                   help="--rule adaptive: gradient evaluations one generated token may take at most "
                        "(default: %(default)s)")
    p.add_argument("--baseline", choices=BASELINES, default="zero",
                   help="what a missing token is, for integrated gradients and occlusion (default: %(default)s)")
    p.add_argument("--target", choices=ATTRIBUTION_TARGETS, default="chosen",
                   help=f"--method {_LOGIT}: the chosen logit or its margin over the runner-up (default: %(default)s)")
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH",
                   help="the model that made the capture (hub id, folder, .gguf or smollm2); required")
    p.add_argument("--random-weights", action="store_true",
                   help="build --model with random weights seeded by --seed, as the capture was (default: off)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-weights (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="device for --model (default: %(default)s)")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="the JSON file to write (.json)")
    p.set_defaults(func=handler, parser_defaults={name: p.get_default(name) for name in _CONTEXT_ONLY})


def handler(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from inspector._atomic import check_writable, write_text_atomic

    if Path(args.out).suffix.lower() != ".json":
        raise ValueError(f"--out {args.out}: the attribution is written as JSON; give a .json file")
    check_writable(args.out, "--out", example="attribution.json")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.method == "integrated_gradients":
        from inspector.analysis.quadrature import check_rule

        check_rule(args.rule, args.steps, args.tolerance, args.max_steps)  # before the model loads
    if args.method == _LOGIT and any(getattr(args, name) != args.parser_defaults[name] for name in _CONTEXT_ONLY):
        raise ValueError(f"--steps, --rule, --tolerance, --max-steps and --baseline do not apply to --method {_LOGIT}")
    if args.method != _LOGIT and args.target != "chosen":
        raise ValueError(f"--target applies to --method {_LOGIT} only")
    from inspector._model import load_model
    from inspector._store import load_capture

    capture = load_capture(args.capture)
    model = load_model(args.model, device=args.device, random_weights=args.random_weights, seed=args.seed)
    document = {"capture": str(args.capture), "model": args.model, **_attribute(args, capture, model)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(document, allow_nan=False) + "\n")
    print(f"wrote {args.out}")
    return 0


def _attribute(args: argparse.Namespace, capture: Any, model: Any) -> dict[str, Any]:
    import sys

    if args.method == _LOGIT:
        from inspector.analysis.direct_logit import logit_attribution

        la = logit_attribution(capture, model, target=args.target)
        return {"method": _LOGIT, "target": la.target, "names": list(la.names), "parts": la.parts.tolist(),
                "total": la.total.tolist(), "token_ids": la.token_ids.tolist()}
    from inspector.analysis.context_attribution import context_attribution

    result = context_attribution(capture, model, method=args.method, steps=args.steps, rule=args.rule,
                                 baseline=args.baseline, tolerance=args.tolerance, max_steps=args.max_steps)
    if result.tolerance is not None and result.completeness_error is not None:
        short = [i for i, e in enumerate(result.completeness_error.tolist()) if not e <= result.tolerance]
        if short:
            print(f"{len(short)} of {result.num_steps} generated tokens (steps {', '.join(map(str, short[:10]))}"
                  f"{' ...' if len(short) > 10 else ''}) are not complete within {result.tolerance:g} after "
                  f"--max-steps {args.max_steps} gradient evaluations: raise --max-steps, or read their "
                  "completeness_error before their scores", file=sys.stderr)
    return result.to_dict()
