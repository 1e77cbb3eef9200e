"""Corpus runs with reference scoring and conditioning, and the research CLI (capture --continuation, order, compare).

References are independent of the code under test: teacher-forced forward passes over the token ids
built here by hand, and attention shares summed by hand from the stored full attention.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest
import torch

import inspector
from inspector._capture.settings import GenerationSettings
from inspector.cli.main import main as cli_main
from inspector.data import build_prompt, load_dailydialog
from inspector.runs import RunConfig, RunMismatchError, load_run, run_corpus


def config(data_dir, **kw) -> RunConfig:
    base: dict[str, Any] = dict(data=str(data_dir), limit=10, batch_size=4,
                                settings=GenerationSettings(max_new_tokens=6))
    base.update(kw)
    return RunConfig(**base)


@torch.no_grad()
def forced_logprobs(im, prompt_ids: list[int], reply_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each reply token [step] float64, log-softmax rows [step, vocab]) from one plain forward pass."""
    out = im.model(input_ids=torch.tensor([prompt_ids + reply_ids]), use_cache=False)
    rows = torch.log_softmax(out.logits[0, len(prompt_ids) - 1 : -1].double(), dim=-1)
    return rows[torch.arange(len(reply_ids)), torch.tensor(reply_ids)], rows


def encode(im, text: str) -> list[int]:
    return list(im.tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, tiny_model, data_dir):
    out = tmp_path_factory.mktemp("scored") / "run"
    return run_corpus(config(data_dir, score_reference=True), out, tiny_model, progress=False)


def test_reference_difficulty_columns_match_a_direct_forced_pass(scored_run, tiny_model, data_dir):
    df = scored_run.summary
    data = load_dailydialog("validation", data_dir)
    assert {"ref_nll", "ref_nll_mean", "ref_ppl", "ref_tokens"} <= set(df.columns)
    # no condition: the condition columns exist but are empty
    assert df[["cond_delta_loglik", "cond_kl_mean", "attn_condition"]].isna().all().all()
    last = df["response"].isna()
    assert last.any() and df.loc[last, "ref_nll"].isna().all()
    for row in df[~last].itertuples():
        prompt = build_prompt(data[row.dial_id], row.turn, tiny_model.tokenizer, context_turns=3)
        assert row.prompt_text == prompt.text  # the generation prompt is the plain one
        reply = encode(tiny_model, " " + row.response.strip())
        logp, _ = forced_logprobs(tiny_model, list(prompt.token_ids), reply)
        assert row.ref_tokens == len(reply)
        assert row.ref_nll == pytest.approx(-float(logp.sum()), rel=1e-4)
        assert row.ref_nll_mean == pytest.approx(-float(logp.mean()), rel=1e-4)
        assert row.ref_ppl == pytest.approx(math.exp(-float(logp.mean())), rel=1e-4)
    doc = json.loads((scored_run.path / "run.json").read_text())
    assert doc["research"] == doc["identity"]["research"] == {"score_reference": True, "condition": "none",
                                                               "condition_style": None}


def test_research_options_are_part_of_the_command_identity(scored_run, tiny_model, data_dir, tmp_path):
    with pytest.raises(RunMismatchError, match="research"):
        run_corpus(config(data_dir), scored_run.path, tiny_model, progress=False)
    with pytest.raises(RunMismatchError, match="condition"):
        run_corpus(config(data_dir, condition="emotion"), scored_run.path, tiny_model, progress=False)
    plain = run_corpus(config(data_dir, limit=2), tmp_path / "plain", tiny_model, progress=False)
    assert plain.settings["identity"]["research"] is None and "ref_ppl" not in plain.summary.columns
    with pytest.raises(ValueError, match="condition must be one of"):
        RunConfig(condition="mood")
    with pytest.raises(ValueError, match="condition_style must be one of"):
        RunConfig(condition="act", condition_style="curly")
    assert RunConfig(condition="act").score_reference is True


def test_conditioned_run_generates_from_the_conditioned_prompt(tmp_path, tiny_model, data_dir, monkeypatch):
    from test_forced_pair import count_prefix_passes

    cfg = config(data_dir, condition="emotion", attention="full", limit=8)
    passes = count_prefix_passes(monkeypatch)
    run = run_corpus(cfg, tmp_path / "cond", tiny_model, progress=False)
    assert passes == []  # the reference is scored from the generation's prompt cache, checked below
    df = run.summary
    data = load_dailydialog("validation", data_dir)
    has_target = df["response_emotion"].notna()
    assert has_target.any() and (~has_target).any()
    for row in df.itertuples():
        plain = build_prompt(data[row.dial_id], row.turn, tiny_model.tokenizer, context_turns=3)
        cap = run.load_capture(row.dial_id, row.turn)
        roles = [s["role"] for s in cap.meta.source["segments"]]
        if row.response_emotion is None:
            assert row.prompt_text == plain.text and "condition" not in roles
            assert math.isnan(row.attn_condition) and math.isnan(row.cond_kl_mean)
            continue
        # the cue states the target: "Agent (happiness):" instead of "Agent:"
        head, cue, tail = plain.text.rpartition("Agent:")
        assert cue and row.prompt_text == f"{head}Agent ({row.response_emotion}):{tail}"
        positions = [i for s in cap.meta.source["segments"] if s["role"] == "condition"
                     for i in range(s["start"], s["end"])]
        assert tiny_model.tokenizer.decode(cap.token_ids[positions]) == f" ({row.response_emotion})"
        # attention share by hand: per layer and head, generated rows, summed over the condition keys
        assert cap.attentions is not None
        att = cap.attentions.double()
        hand = torch.zeros(att.shape[:2], dtype=torch.float64)
        for q in range(cap.prompt_len, cap.seq_len):
            hand += att[:, :, q, positions].sum(-1)
        hand /= cap.seq_len - cap.prompt_len
        kept = torch.tensor(cap.meta.extra["condition_attention"], dtype=torch.float64)
        assert kept.shape == (tiny_model.num_layers, tiny_model.num_heads)
        assert torch.allclose(kept, hand, atol=2e-3)  # stored float16 attention
        assert row.attn_condition == pytest.approx(float(hand.mean()), abs=2e-3)
        # the condition effect against direct forced passes after the plain and the conditioned prompt
        reply = encode(tiny_model, " " + row.response.strip())
        lp_plain, rows_plain = forced_logprobs(tiny_model, list(plain.token_ids), reply)
        lp_cond, rows_cond = forced_logprobs(tiny_model, encode(tiny_model, row.prompt_text), reply)
        assert row.ref_nll == pytest.approx(-float(lp_plain.sum()), rel=1e-4)
        assert row.cond_delta_loglik == pytest.approx(float(lp_cond.sum() - lp_plain.sum()), abs=1e-4)
        kl = (rows_cond.exp() * (rows_cond - rows_plain)).sum(-1)
        assert row.cond_kl_mean == pytest.approx(float(kl.mean()), abs=1e-5)
        assert row.cond_kl_max == pytest.approx(float(kl.max()), abs=1e-5)
    stats = run.stats("response_emotion")
    assert {"ref_ppl", "cond_delta_loglik_mean", "cond_kl_mean", "attn_condition"} <= set(stats.columns)


def test_conditioned_run_resumes_to_the_same_summary(tmp_path, tiny_model, data_dir):
    cfg = config(data_dir, condition="act", condition_style="bracket", limit=9, batch_size=2)
    reference = run_corpus(cfg, tmp_path / "ref", tiny_model, progress=False).summary
    assert reference["prompt_text"].str.contains(r"Agent \[\w+\]:").any()

    def stop(batch: int) -> None:
        if batch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_corpus(cfg, tmp_path / "run", tiny_model, progress=False, on_batch=stop, log=lambda m: None)
    resumed = run_corpus(cfg, tmp_path / "run", tiny_model, progress=False, log=lambda m: None).summary
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), reference.drop(columns="seconds"),
                                  check_exact=True)


def test_run_cli_research_flags_and_stats(tmp_path, tiny_dir, data_dir, capsys):
    out = tmp_path / "run"
    args = ["run", "--model", str(tiny_dir), "--random-weights", "--device", "cpu", "--data", str(data_dir),
            "--limit", "6", "--batch-size", "3", "--max-new-tokens", "4", "--no-progress", "--out", str(out),
            "--condition", "emotion", "--condition-style", "bracket"]
    assert cli_main(args) == 0
    run = load_run(out)
    assert run.settings["identity"]["research"] == {"score_reference": True, "condition": "emotion",
                                                    "condition_style": "bracket"}
    assert run.summary["ref_ppl"].notna().any() and run.summary["cond_kl_mean"].notna().any()
    capsys.readouterr()
    assert cli_main(["stats", str(out), "--by", "response_emotion"]) == 0
    printed = capsys.readouterr().out
    assert "ref_ppl" in printed and "cond_delta_loglik_mean" in printed


def test_capture_continuation_scores_instead_of_generating(tiny_dir, tiny_model, tmp_path, capsys):
    out = tmp_path / "forced.safetensors"
    rc = cli_main(["capture", "--model", str(tiny_dir), "--random-weights", "--device", "cpu",
                   "--prompt", "User: hi\\nAgent:", "--continuation", " Hello there.", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    cap = inspector.load_capture(out)
    reply = encode(tiny_model, " Hello there.")
    assert f"forced continuation ({len(reply)} tokens): ' Hello there.'" in printed
    assert cap.stop_reason == "forced" and cap.meta.generation["mode"] == "forced"
    assert cap.prompt_text == "User: hi\nAgent:" and cap.generated_ids.tolist() == reply
    logp, _ = forced_logprobs(tiny_model, encode(tiny_model, "User: hi\nAgent:"), reply)
    assert torch.allclose(cap.raw.chosen_logprob.double(), logp, atol=1e-4)
    for step in cap.steps:
        assert f"{step.step:>4}  " in printed
    rc = cli_main(["capture", "--model", str(tiny_dir), "--random-weights", "--continuation", "",
                   "--out", str(tmp_path / "x.safetensors")])
    assert rc == 2 and "--continuation is empty" in capsys.readouterr().err


def test_order_writes_every_turn_easy_to_hard(scored_run, tmp_path, capsys):
    out = tmp_path / "order.csv"
    assert cli_main(["order", str(scored_run.path), "--by", "ref_ppl", "--bins", "3", "--out", str(out)]) == 0
    order = pd.read_csv(out)
    df = scored_run.summary
    assert sorted(zip(order["dial_id"], order["turn"], strict=True)) == sorted(
        zip(df["dial_id"], df["turn"], strict=True))  # complete: every turn once
    ranked = order[order["ref_ppl"].notna()]
    assert ranked["ref_ppl"].is_monotonic_increasing and order["rank"].tolist() == list(range(1, len(df) + 1))
    assert order.loc[order["ref_ppl"].isna(), "bin"].isna().all()
    assert ranked["bin"].is_monotonic_increasing and sorted(ranked["bin"].unique()) == [0, 1, 2]
    sizes = ranked["bin"].value_counts().sort_index().tolist()
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == df["ref_ppl"].notna().sum()
    assert "wrote" in capsys.readouterr().out
    assert cli_main(["order", str(scored_run.path), "--by", "no_such", "--out", str(out)]) == 2
    assert "no column" in capsys.readouterr().err
    assert cli_main(["order", str(scored_run.path), "--out", str(tmp_path / "missing" / "o.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_compare_two_runs_paired_by_turn(scored_run, tiny_model, data_dir, tmp_path, capsys):
    other = run_corpus(config(data_dir, score_reference=True, limit=8,
                              settings=GenerationSettings(max_new_tokens=6, do_sample=True, seed=3)),
                       tmp_path / "sampled", tiny_model, progress=False)
    csv = tmp_path / "cmp.csv"
    rc = cli_main(["compare", str(scored_run.path), str(other.path), "--by", "emotion", "--resamples", "200",
                   "--csv", str(csv)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "8 turns in both runs" in printed and "2 turns only in run A" in printed
    # the runs decoded differently: said, setting by setting, from their run.json
    assert "warning: settings differ: generation.do_sample False (A) vs True (B)" in printed
    assert "-0.0000" not in printed and " 0.0000 " not in printed
    table = pd.read_csv(csv)
    a = scored_run.summary.set_index(["dial_id", "turn"])
    b = other.summary.set_index(["dial_id", "turn"])
    both = a.index.intersection(b.index)
    diff = (b.loc[both, "entropy_mean"] - a.loc[both, "entropy_mean"]).mean()
    row = table[(table["group"] == "(all)") & (table["column"] == "entropy_mean")].iloc[0]
    assert row["n"] == 8 and row["mean_diff"] == pytest.approx(diff)
    assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
    # the same reference replies after the same prompts: difficulty does not change between the runs
    ref = table[(table["group"] == "(all)") & (table["column"] == "ref_nll")].iloc[0]
    assert ref["mean_diff"] == pytest.approx(0.0, abs=1e-4)
    assert set(table["group"]) >= {"(all)", *a.loc[both, "emotion"]}
