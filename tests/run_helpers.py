"""Inputs for corpus-run tests that need no file from ../shared: a handmade DailyDialog split and a
model folder for a tiny GPT-2 with the byte-level tokenizer built in code."""

from __future__ import annotations

from pathlib import Path

#: A handmade validation split: (utterances, acts, emotions) per dialogue. Lengths vary so that
#: sorting by prompt length reorders the turns; every act and several emotions occur.
DIALOGUES: list[tuple[list[str], list[int], list[int]]] = [
    (["Good morning , sir . Is there a bank near here ?", "There is one . 5 blocks away from here .",
      "Well , that's too far . Can you change some money for me ?", "Surely , of course ."],
     [2, 1, 3, 4], [0, 0, 0, 4]),
    (["Hi !", "Hello , how are you doing today ?", "Great , thanks ."], [1, 2, 1], [4, 0, 4]),
    (["Could you close the window , please ? It is getting cold in here .", "Sure .",
      "Thank you so much .", "You are welcome .", "Do you want some tea ?"],
     [3, 4, 1, 1, 2], [0, 0, 4, 0, 0]),
    (["I lost my keys again !", "Oh no , where did you last see them ?",
      "I think I left them at the office , on my desk next to the phone .", "Let's go and look ."],
     [1, 2, 1, 3], [5, 3, 5, 0]),
    (["What time does the train leave ?", "At half past six .", "Then we must hurry !"],
     [2, 1, 3], [0, 0, 6]),
    (["That movie was awful .", "Really ? I liked it a lot , especially the ending .", "You always like sad endings ."],
     [1, 2, 1], [2, 6, 1]),
    (["Can I help you ?", "Yes , I'm looking for a blue shirt in size medium .", "Here you are .",
      "How much is it ?", "Twenty dollars ."],
     [2, 3, 1, 2, 1], [0, 0, 0, 0, 0]),
    (["Let's meet at noon .", "OK , see you then ."], [3, 4], [4, 4]),
]
NUM_TURNS = sum(len(d[0]) for d in DIALOGUES)


def write_dailydialog(root: Path, split: str = "validation") -> Path:
    """Write :data:`DIALOGUES` in the original release layout under ``root``; returns ``root``."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"dialogues_{split}.txt").write_text(
        "".join(" __eou__ ".join(t) + " __eou__\n" for t, _, _ in DIALOGUES), encoding="utf-8")
    (folder / f"dialogues_act_{split}.txt").write_text(
        "".join(" ".join(map(str, a)) + " \n" for _, a, _ in DIALOGUES), encoding="utf-8")
    (folder / f"dialogues_emotion_{split}.txt").write_text(
        "".join(" ".join(map(str, e)) + " \n" for _, _, e in DIALOGUES), encoding="utf-8")
    return root


def write_byte_model_folder(folder: Path) -> Path:
    """A model folder (config + tokenizer files, no weights) for a 2-layer, 2-head, 32-dim GPT-2 whose
    tokenizer is :func:`inspector._fallback.builtin_tokenizer`; load it with ``random_weights=True``."""
    from transformers import GPT2Config

    from inspector._fallback import builtin_tokenizer

    tok = builtin_tokenizer()
    GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(tok), n_positions=1024,
               bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def stored_run_command(out: Path, reference: Path) -> list[str]:
    """The ``inspector run`` arguments of the run a page started in ``out`` (its stored config and model),
    writing into ``reference`` instead."""
    from inspector.cli.run_args import run_command
    from inspector.runs.background import RunModel
    from inspector.runs.folder import read_run_request

    config, model = read_run_request(out)
    return run_command(config, reference, RunModel(**model))
