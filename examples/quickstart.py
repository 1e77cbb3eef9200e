"""Quick start: generate a reply with capture, print the per-step table, save the capture.

Runs offline. It loads ``gpt2`` when it can (a local copy or the Hub), else the offline demo model
``smollm2`` (SmolLM2-135M-Instruct, a trained model; ``bash scripts/setup.sh`` installs it), else a
GPT-2 with random weights from a local config (``../shared/models/gpt2-offline``), else a small
built-in model, and says which one it got and whether its weights are random. With ``--model``
any hub id, local folder or ``.gguf`` file is tried first; ``--model smollm2`` asks for the demo
model directly. A model with a chat template gets the user turn as one chat message, others the
``User: ... Agent:`` form of the original notebook.

    python examples/quickstart.py                  # or: --model smollm2 --max-new-tokens 30 --out out/quickstart
"""

from __future__ import annotations

import argparse
from pathlib import Path

import inspector
from inspector.data.chat import has_chat_template
from inspector.data.prompts import chat_text_prompt

#: The first turn of DailyDialog's first validation dialogue (its spacing normalised).
USER_TURN = "Good morning, sir. Is there a bank near here?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt2", help="hub id, local folder, .gguf file or 'smollm2' (default: gpt2)")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="new tokens at most (default: 30)")
    parser.add_argument("--out", default="out/quickstart", help="folder for the capture (default: out/quickstart)")
    args = parser.parse_args()

    loaded = inspector.load_with_fallback(args.model, device="cpu")
    model = loaded.model
    print(loaded.message)
    print(f"loaded: {model.describe()}")
    print("random weights: yes, the text is meaningless\n" if model.random_weights else "random weights: no\n")

    if has_chat_template(model.tokenizer):
        prompt = chat_text_prompt(USER_TURN, model.tokenizer)  # one user message and the assistant cue
        cap = model.generate(prompt.text, max_new_tokens=args.max_new_tokens, sources=prompt.source())
    else:  # the notebook's form; stop before the model writes the next user line
        cap = model.generate(f"User: {USER_TURN} \nAgent:", max_new_tokens=args.max_new_tokens,
                          stop_strings=["User:", "\n"])
    assert isinstance(cap, inspector.Capture)
    print(inspector.capture_report(cap))

    path = Path(args.out) / "quickstart.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    cap.save(path)
    print(f"\nsaved {path}: attention {tuple(cap.attentions.shape) if cap.attentions is not None else None} "
          "[layer, head, query, key]; open it with `inspector dashboard --capture " + str(path) + "`")


if __name__ == "__main__":
    main()
