"""A corpus run's progress: a bar that moves with every generation step, and the run's time estimated up front.

A batch of 16 turns takes minutes on a small CPU; a bar counting only finished batches shows
``0/200 [06:45<?, ?turn/s]`` until the first one ends. Here the bar advances by a fraction of
the batch at each decoding step (``len(batch) / max_new_tokens`` turns per step, the remainder
when the batch stops), so its rate, tokens per second and time left are there from the first steps.
Before the run starts, one short warm-up generation (the first batch's prompts, three new tokens)
measures the prefill and the time per step, and :func:`estimate_seconds` turns them into the whole
run's time, said in one line by :func:`describe_estimate`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from inspector._formatting import format_value

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.settings import GenerationSettings
    from inspector._handle import ModelHandle

#: New tokens the warm-up generates: the first is the prefill, the next two time a decoding step.
WARMUP_TOKENS = 3
#: The bar: turns to a tenth (the count moves by fractions of a batch), rate, time left, tokens/s.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} turns [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


@dataclasses.dataclass(frozen=True)
class Warmup:
    """What the warm-up measured: seconds until the first new token of a batch (the prefill and its
    first step) and seconds per later decoding step, for a batch of ``rows`` prompts."""

    prefill_seconds: float
    step_seconds: float
    rows: int

    @property
    def tokens_per_second(self) -> float:
        """Tokens generated per second across the batch's rows while decoding."""
        return self.rows / self.step_seconds if self.step_seconds > 0 else float("inf")


def measure_warmup(model: ModelHandle, prompts: Sequence[str], settings: GenerationSettings) -> Warmup | None:
    """Time one short generation of ``prompts`` (:data:`WARMUP_TOKENS` new tokens, nothing kept).

    ``None`` when every row stopped before a second step was timed (nothing to say about the steps).
    """
    from inspector._capture.engine import generate

    times: list[float] = []
    short = dataclasses.replace(settings, max_new_tokens=WARMUP_TOKENS)
    t0 = time.perf_counter()
    generate(model, list(prompts), settings=short, on_step=lambda done, total: times.append(time.perf_counter()))
    if len(times) < 2:
        return None
    step = (times[-1] - times[0]) / (len(times) - 1)
    return Warmup(prefill_seconds=times[0] - t0, step_seconds=step, rows=len(prompts))


def estimate_seconds(warmup: Warmup, batch_sizes: Sequence[int], max_new_tokens: int) -> float:
    """Seconds for batches of ``batch_sizes`` turns that each generate ``max_new_tokens`` tokens at most.

    Each batch costs the warm-up's prefill and ``max_new_tokens - 1`` steps, scaled by its size relative
    to the warm-up batch (a smaller last batch is cheaper): an upper bound, as replies that stop early
    end their batch sooner.
    """
    per_full_batch = warmup.prefill_seconds + (max_new_tokens - 1) * warmup.step_seconds
    return sum(per_full_batch * min(1.0, size / warmup.rows) for size in batch_sizes)


def format_duration(seconds: float) -> str:
    """``42 -> "about 40 seconds"``, ``370 -> "about 6 minutes"``, ``5400 -> "about 1.5 hours"``."""
    if seconds < 60:
        return f"about {max(10, round(seconds, -1)):.0f} seconds" if seconds >= 10 else "a few seconds"
    if seconds < 5400:
        minutes = round(seconds / 60)
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    return f"about {seconds / 3600:.1f} hours"


def describe_estimate(warmup: Warmup, batch_sizes: Sequence[int], max_new_tokens: int) -> str:
    """One line: ``"estimate: about 6 minutes for 200 turns at ~95 tokens/s (...)"``."""
    seconds = estimate_seconds(warmup, batch_sizes, max_new_tokens)
    turns = sum(batch_sizes)
    return (f"estimate: {format_duration(seconds)} for {turns} turn{'s' if turns != 1 else ''} "
            f"at ~{format_value(warmup.tokens_per_second, 2)} tokens/s ({len(batch_sizes)} "
            f"batch{'es' if len(batch_sizes) != 1 else ''} of up to {warmup.rows}, "
            f"{max_new_tokens} new tokens each at most: less where replies stop early; measured on a "
            f"{WARMUP_TOKENS}-token warm-up)")


class RunProgress:
    """The run's bar: :meth:`step` after each decoding step of a batch, :meth:`batch_done` when it is written.

    ``bar`` is any tqdm-like object (``update``, ``set_postfix_str``, ``close``); :meth:`open` makes the
    plain text one (no notebook widget: ``IProgress not found`` is not a cell's first output).
    """

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self._credited = 0.0  # turns credited to the batch now running
        self._tokens = 0
        self._t0 = time.perf_counter()

    @classmethod
    def open(cls, total: int, initial: int, desc: str, enabled: bool = True, file: IO[str] | None = None
             ) -> RunProgress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=initial, desc=desc, disable=not enabled, file=file or sys.stderr,
                   dynamic_ncols=True, smoothing=0.3, mininterval=0.5, bar_format=BAR_FORMAT, unit="turn")
        return cls(bar)

    def step(self, rows: int, steps_done: int, max_new_tokens: int) -> None:
        """Decoding step ``steps_done`` of ``max_new_tokens`` of a batch of ``rows`` turns is done."""
        self._tokens += rows
        seconds = time.perf_counter() - self._t0
        if seconds > 0:  # before the update, which draws the bar
            self.bar.set_postfix_str(f"{format_value(self._tokens / seconds, 2)} tok/s", refresh=False)
        target = rows * min(steps_done, max_new_tokens) / max_new_tokens
        if target > self._credited:
            self.bar.update(target - self._credited)
            self._credited = target

    def batch_done(self, rows: int) -> None:
        """A batch of ``rows`` turns is written: the bar gets what its steps had not credited."""
        if rows > self._credited:
            self.bar.update(rows - self._credited)
        self._credited = 0.0

    def close(self) -> None:
        self.bar.close()
