"""The originating notebook's flow, redone with inspector.

The notebook prompted GPT-2 with ``"User: ...\\nAgent:"``, called
``generate(..., output_logits=True, return_dict_in_generate=True, use_cache=False)``
with output_attentions, averaged each step's stacked attentions over layers
(``torch.stack(output.attentions[step]).mean(dim=0)``) and read the per-step
logits. Here the same comes from one cached generate call, exactly.

Runs offline: without ``--model`` it uses real GPT-2 when it can be loaded, else the
trained offline demo model ``smollm2`` (SmolLM2-135M-Instruct, when installed), and
otherwise the random-weights GPT-2 built from ``INSPECTOR_GPT2_OFFLINE_DIR`` (or
``../shared/models/gpt2-offline``), whose text is meaningless but whose numbers are
exact. The prompt takes the model's own form: the notebook's ``User:``/``Agent:`` lines
for GPT-2, the chat template for an instruct model.

    python examples/notebook_flow.py [--model DIR --random-weights] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

import inspector
from inspector.data import build_prompt

ROOT = Path(__file__).resolve().parents[1]
# A DailyDialog-style exchange. The notebook used the dataset's turns: `inspector.build_prompt` and
# `inspector run` make those prompts (README, "DailyDialog and corpus runs").
USER_TURN = "Say, Jim, how about going for a few beers after dinner?"
REFERENCE_RESPONSE = "You know that is tempting but is really not good for our fitness."


def load(args: argparse.Namespace) -> inspector.InspectorModel:
    if args.model:
        return inspector.load_model(args.model, device=args.device, random_weights=args.random_weights)

    loaded = inspector.load_with_fallback("gpt2", device=args.device)  # gpt2, else smollm2, else random weights
    print(loaded.message, file=sys.stderr)
    return loaded.model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--out", default=None, help="folder for the capture file (default: a temporary folder)")
    args = p.parse_args(argv)

    model = load(args)
    print(model.describe())
    # the notebook's "User: ...\nAgent:" for GPT-2, the model's chat template where it has one
    prompt = build_prompt([USER_TURN], 0, model.tokenizer, context_turns=1)
    # the notebook's settings; the KV cache stays on (identical numbers, several times faster on CPU).
    # A chat model ends its turn with its end-of-turn token; the notebook's form stops at the next line.
    stops = ["User:", "\n"] if prompt.template == "notebook" else None
    cap = model.generate(prompt.text, max_new_tokens=args.max_new_tokens, stop_strings=stops, sources=prompt.source(),
                      keep_logits=True, attention_dtype=torch.float32)
    print(inspector.capture_report(cap))
    print(f"\nreference response: {REFERENCE_RESPONSE!r}")

    # the notebook's stacked mean, step by step: [head, query, key] over the first prompt_len + step tokens
    for step in range(min(cap.num_steps, 3)):
        sm = cap.stacked_mean(step)
        last_row = sm.mean(0)[-1]  # mean over heads of the newest token's row
        top = last_row.topk(min(3, last_row.numel()))
        looks = ", ".join(f"{cap.tokens[int(i)]!r} {float(v):.2f}"
                          for v, i in zip(top.values, top.indices, strict=True))
        print(f"step {step}: stacked-mean attention {tuple(sm.shape)}; newest token looks at {looks}")

    # per-step logits, as the notebook read them from output.logits
    logits = cap.logits  # [step, vocab]
    print(f"per-step raw logits: {tuple(logits.shape)}; argmax agrees with greedy choice: "
          f"{bool((logits.argmax(-1) == cap.generated_ids).all())}")

    out_dir = Path(args.out) if args.out else Path(os.environ.get("TMPDIR", "/tmp"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = cap.save(out_dir / "notebook_flow.safetensors")
    again = inspector.load_capture(path)
    print(f"saved and reloaded {path} ({path.stat().st_size / 1e6:.2f} MB): "
          f"identical attention: {torch.equal(again.attentions, cap.attentions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
