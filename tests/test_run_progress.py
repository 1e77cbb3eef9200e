"""A corpus run's bar moves with every decoding step, and the run's time is estimated before it starts."""

from __future__ import annotations

import io
import re

import pytest

from inspector.runs.progress import (
    WARMUP_TOKENS,
    RunProgress,
    Warmup,
    describe_estimate,
    estimate_seconds,
    format_duration,
    measure_warmup,
)


class FakeBar:
    def __init__(self):
        self.n = 0.0
        self.postfix = ""
        self.closed = False

    def update(self, x):
        self.n += x

    def set_postfix_str(self, s, refresh=True):
        self.postfix = s

    def close(self):
        self.closed = True


def test_the_bar_moves_by_a_fraction_of_the_batch_at_each_step():
    bar = FakeBar()
    p = RunProgress(bar)
    p.step(16, 1, 4)
    assert bar.n == pytest.approx(4.0)  # 16 turns x 1/4 of the steps, before the batch is done
    assert re.fullmatch(r"[0-9.e+]+ tok/s", bar.postfix)
    p.step(16, 2, 4)
    assert bar.n == pytest.approx(8.0)
    p.batch_done(16)  # stopped early (every reply ended): the rest is credited at once
    assert bar.n == pytest.approx(16.0)
    p.step(8, 4, 4)  # the next batch, fully generated
    p.batch_done(8)
    assert bar.n == pytest.approx(24.0)


def test_the_real_bar_shows_a_count_and_rate_after_one_step():
    out = io.StringIO()
    p = RunProgress.open(total=200, initial=0, desc="run", file=out)
    p.bar.mininterval = 0  # draw every update
    p.step(16, 1, 40)
    assert p.bar.format_dict["n"] == pytest.approx(0.4)  # 16 / 40 turns credited
    assert "0.4/200 turns" in out.getvalue()  # one step of 40 of a batch of 16: 0.4 turns, drawn
    p.step(16, 2, 40)
    p.bar.refresh()
    p.close()
    assert "tok/s" in out.getvalue()
    assert "?turn/s" not in out.getvalue().splitlines()[-1].split("\r")[-1]


def test_estimate_is_prefill_plus_steps_per_batch_scaled_by_size():
    warm = Warmup(prefill_seconds=2.0, step_seconds=0.5, rows=16)
    # per full batch: 2 + 39 x 0.5 = 21.5 s; a batch of 8 costs half of that
    assert estimate_seconds(warm, [16, 16, 8], 40) == pytest.approx(21.5 + 21.5 + 10.75)
    assert warm.tokens_per_second == pytest.approx(32.0)
    line = describe_estimate(warm, [16, 16, 8], 40)
    assert line.startswith("estimate: about 50 seconds for 40 turns at ~32 tokens/s")


@pytest.mark.parametrize("seconds, text", [(5, "a few seconds"), (42, "about 40 seconds"),
                                           (370, "about 6 minutes"), (5400, "about 1.5 hours")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_warmup_times_the_first_batch(tiny_model):
    from inspector._capture.settings import GenerationSettings

    warm = measure_warmup(tiny_model, ["A: hi\nB:", "A: hello there\nB:"], GenerationSettings(max_new_tokens=40))
    assert warm is not None and warm.rows == 2
    assert warm.prefill_seconds > 0 and warm.step_seconds > 0
    assert WARMUP_TOKENS == 3


def test_a_run_says_its_estimate_and_draws_the_bar_from_steps(tiny_model, tiny_dir, data_dir, tmp_path, capsys,
                                                              monkeypatch):
    from inspector._capture.settings import GenerationSettings
    from inspector.runs.config import RunConfig
    from inspector.runs.execute import run_corpus

    config = RunConfig(split="validation", data=str(data_dir), limit=4, batch_size=2,
                       settings=GenerationSettings(max_new_tokens=4))
    steps: list[tuple[int, int]] = []
    from inspector.runs import progress as progress_mod

    real_step = progress_mod.RunProgress.step

    def spy(self, rows, done, total):
        steps.append((rows, done))
        return real_step(self, rows, done, total)

    monkeypatch.setattr(progress_mod.RunProgress, "step", spy)
    run_corpus(config, tmp_path / "r", tiny_model, model_id=str(tiny_dir), progress=True)
    err = capsys.readouterr().err
    assert re.search(r"estimate: .* for 4 turns at ~[\d.]+ tokens/s \(2 batches of up to 2", err)
    assert err.index("estimate:") < err.index("turns [")  # said before the bar
    assert steps and steps[0] == (2, 1)  # the bar heard of the first step of the first batch
    assert "4.0/4 turns" in err
