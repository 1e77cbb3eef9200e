"""Generation settings: one source of truth for the CLI, bounds on every input, no memory kept across calls."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import pytest
import torch

from inspector._capture.settings import (
    MAX_STOP_STRING_CHARS,
    MAX_STOP_STRING_PRODUCT,
    MAX_STOP_STRINGS,
    GenerationSettings,
)
from inspector.cli.capture import NOT_FLAGS, add_generation_args, settings_from_args

FIELDS = {f.name: f for f in dataclasses.fields(GenerationSettings)}
INT_FIELDS = [n for n, f in FIELDS.items() if f.type in ("int", "int | None")]
FLOAT_FIELDS = [n for n, f in FIELDS.items() if f.type == "float"]
BOOL_FIELDS = [n for n, f in FIELDS.items() if f.type == "bool"]


def parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_generation_args(p, **kw)
    return p


def options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in p._actions if a.option_strings and a.dest != "help"}


def test_every_field_is_a_flag_or_excluded_with_a_reason():
    flagged = {n for n, f in FIELDS.items() if f.metadata.get("flag")}
    assert set(NOT_FLAGS) <= set(FIELDS), "NOT_FLAGS names a field that does not exist"
    assert all(reason.strip() for reason in NOT_FLAGS.values())
    assert flagged | set(NOT_FLAGS) == set(FIELDS)
    assert not flagged & set(NOT_FLAGS)
    assert set(options(parser())) == flagged


def test_every_field_has_help_and_each_option_states_its_default():
    for name, f in FIELDS.items():
        assert f.metadata.get("help"), f"{name} has no help text"
    for dest, action in options(parser()).items():
        assert action.help, dest
        if not isinstance(action, argparse._StoreTrueAction):
            assert "(default: " in action.help, f"--{dest} does not state its default"
            assert dest in FIELDS and action.option_strings == [FIELDS[dest].metadata["flag"]]


def test_defaults_round_trip_through_the_parser():
    assert settings_from_args(parser().parse_args([])) == GenerationSettings()
    run_style = parser(max_new_tokens=40, truncate=False)
    assert "truncate_prompt" not in options(run_style)
    assert settings_from_args(run_style.parse_args([])) == GenerationSettings()
    assert parser(max_new_tokens=7).parse_args([]).max_new_tokens == 7


def test_every_flag_sets_its_field():
    argv = ["--max-new-tokens", "12", "--do-sample", "--temperature", "0.5", "--top-k", "7", "--top-p", "0.8",
            "--num-return-sequences", "2", "--repetition-penalty", "1.3", "--stop-string", "a\\nb",
            "--stop-string", "c", "--seed", "3", "--top-k-logits", "4", "--keep-logits",
            "--attention-dtype", "float32", "--truncate-prompt", "--keep-hidden-states", "--hidden-dtype",
            "float32", "--keep-value-norms", "--lens-k", "3"]
    got = settings_from_args(parser().parse_args(argv))
    assert got == GenerationSettings(
        max_new_tokens=12, do_sample=True, temperature=0.5, top_k=7, top_p=0.8, num_return_sequences=2,
        repetition_penalty=1.3, stop_strings=("a\nb", "c"), seed=3, top_k_logits=4, keep_logits=True,
        attention_dtype="float32", truncate_prompt=True, keep_hidden_states=True, hidden_dtype="float32",
        keep_value_norms=True, lens_k=3,
    )
    # the selection flags exclude value norms: checked in a second call
    selective = settings_from_args(parser().parse_args(["--layers", "0,2-3", "--heads", "1", "--attention-rows",
                                                        "generated", "--head-reduce", "mean", "--memory-budget",
                                                        "1GB"]))
    assert selective == GenerationSettings(layers=(0, 2, 3), heads=(1,), attention_rows="generated",
                                           head_reduce="mean", memory_budget=10**9)
    # interventions: a third call
    switched = settings_from_args(parser().parse_args(["--ablate", "L0.H1,L1.mlp", "--ablate-mode", "mean",
                                                       "--patch", "0:1", "--patch-from", "clean.safetensors"]))
    # a (layer, position) pair is accepted and stored as "0:1"; the field is annotated with the stored type only
    assert switched == GenerationSettings(ablate=("L0.H1", "L1.mlp"), ablate_mode="mean",
                                          patch=((0, 1),),  # type: ignore[arg-type]
                                          patch_from="clean.safetensors")
    covered = {n for n in FIELDS if getattr(got, n) != getattr(GenerationSettings(), n)}
    covered |= {n for n in FIELDS if getattr(selective, n) != getattr(GenerationSettings(), n)}
    covered |= {n for n in FIELDS if getattr(switched, n) != getattr(GenerationSettings(), n)}
    assert covered | {"num_beams"} == set(FIELDS) - set(NOT_FLAGS)  # beams exclude sampling: checked alone
    assert settings_from_args(parser().parse_args(["--num-beams", "3"])).num_beams == 3


@pytest.mark.parametrize("name", INT_FIELDS)
def test_bool_is_not_an_int_setting(name):
    bad: dict[str, Any] = {name: True}  # the wrong type on purpose: the check under test
    with pytest.raises(ValueError, match=rf"{name} must be an integer"):
        GenerationSettings(**bad)


@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_bool_is_not_a_float_setting(name):
    bad: dict[str, Any] = {name: True}  # the wrong type on purpose: the check under test
    with pytest.raises(ValueError, match=rf"{name} must be a finite number"):
        GenerationSettings(**bad)


@pytest.mark.parametrize("name", BOOL_FIELDS)
def test_bool_settings_take_bools_only(name):
    bad: dict[str, Any] = {name: 1}  # the wrong type on purpose: the check under test
    with pytest.raises(ValueError, match=rf"{name} must be True or False"):
        GenerationSettings(**bad)


@pytest.mark.parametrize("value", [[], {}, None, 16, "int8"])
def test_attention_dtype_must_be_a_known_name(value):
    with pytest.raises(ValueError, match="attention_dtype must be one of"):
        GenerationSettings(attention_dtype=value)


def test_attention_dtype_accepts_torch_dtypes():
    # accepted and stored as its name; the field is annotated with the stored type (str) only
    assert GenerationSettings(attention_dtype=torch.bfloat16).attention_dtype == "bfloat16"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stops", "message"),
    [
        (["x"] * (MAX_STOP_STRINGS + 1), f"at most {MAX_STOP_STRINGS} stop strings"),
        (["y" * (MAX_STOP_STRING_CHARS + 1)], f"at most {MAX_STOP_STRING_CHARS} are allowed"),
        (["a" * MAX_STOP_STRING_CHARS, "b", "c", "d", "e"], f"must be at most {MAX_STOP_STRING_PRODUCT}"),
        (["ok", ""], "non-empty strings"),
        (["ok", 3], "non-empty strings"),
        (["\ud800"], "stop string 0 .* unpaired surrogate"),
        (5, "a string or a list of strings"),
    ],
)
def test_stop_string_bounds(stops, message):
    with pytest.raises(ValueError, match=message):
        GenerationSettings(stop_strings=stops)


def test_stop_strings_at_the_bounds_are_accepted():
    # a list or one string is accepted and stored as a tuple; the field is annotated with the stored type only
    at_count = GenerationSettings(stop_strings=["a" * 32] * MAX_STOP_STRINGS)  # type: ignore[arg-type]
    assert len(at_count.stop_strings) == MAX_STOP_STRINGS
    at_length = GenerationSettings(stop_strings=["a" * MAX_STOP_STRING_CHARS] * 4)  # type: ignore[arg-type]
    assert at_length.stop_strings[0] == "a" * 256
    assert GenerationSettings(stop_strings="\n").stop_strings == ("\n",)  # type: ignore[arg-type]


def test_different_stop_strings_leave_at_most_one_table_behind(byte_tiny):
    """transformers caches a table per stop-string set (up to 9, each up to GBs for long strings): keep one."""
    from transformers.generation import stopping_criteria as sc

    sc.STOP_STRING_EMBEDDING_CACHE.clear()
    for i in range(12):
        stop = f"{i:02d}" + "abcdefgh" * 31 + "xy"  # 256 characters, different each call
        byte_tiny.generate("Hello", max_new_tokens=2, stop_strings=[stop], keep_attention=False)
    assert len(sc.STOP_STRING_EMBEDDING_CACHE) == 1
    (key,) = sc.STOP_STRING_EMBEDDING_CACHE
    assert any(isinstance(part, tuple) and f"11{'abcdefgh' * 31}xy".encode() in part for part in key)  # the last


@pytest.mark.parametrize("command", ["capture", "doctor"])
def test_every_option_of_capture_and_doctor_has_help(command):
    from inspector.cli.main import build_parser

    group = build_parser()._subparsers
    assert group is not None
    commands = group._group_actions[0]
    assert isinstance(commands, argparse._SubParsersAction)
    sub = commands.choices[command]
    missing = [a.option_strings[0] for a in sub._actions if a.option_strings and not a.help]
    assert not missing, f"inspector {command}: options without help: {missing}"
    valued = [a for a in sub._actions if a.option_strings and a.nargs != 0 and a.dest != "help"]
    assert all("default" in a.help or a.default is None for a in valued), [a.dest for a in valued]


def test_seed_outside_int64_is_refused_before_any_model_work():
    from inspector._capture.settings import MAX_SEED, GenerationSettings

    assert GenerationSettings(do_sample=True, seed=MAX_SEED).seed == MAX_SEED
    for bad in (MAX_SEED + 1, 2**64, -1):
        with pytest.raises(ValueError, match="seed must be 0 to 9223372036854775807"):
            GenerationSettings(do_sample=True, seed=bad)
