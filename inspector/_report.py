"""Presentation of captures: the per-step text table the CLI prints and the step table the dashboard shows."""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

from inspector._capture.forced import is_forced
from inspector._records.capture import Capture

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

RANDOM_WEIGHTS_BANNER = "NOTE: random weights: the generated text is meaningless; the numbers are still exact."


def _prob(p: float) -> str:
    # The one probability format of the CLI, the dashboard and the figures: 0.00015 is "0.015%", not "2e-04".
    from inspector._formatting import format_prob

    return format_prob(p)


def _show(token: str, width: int) -> str:
    from inspector.plots.labels import table_token

    text = table_token(token)  # ␣ for edge spaces, ↵ for newlines, escapes for control characters
    return text if len(text) <= width else text[: width - 1] + "…"


def step_legend(processed: bool = False) -> str:
    """The lines under :func:`step_table`: what each column is and in which unit, and the token marks."""
    from inspector.plots.labels import TOKEN_LEGEND

    used = "; p(used): the same after the decoding settings (temperature, top-k, top-p)" if processed else ""
    return (f"prob: probability of the token under the model's raw logits{used}; rank: 1 = the most likely; "
            f"entropy: of the next-token distribution, in nats (natural log)\n{TOKEN_LEGEND}")


def step_table(capture: Capture, alternatives: int = 3, token_width: int = 14) -> str:
    """The per-step table: token, probability, rank, entropy and top alternatives.

    Probabilities and ranks are under the raw model logits; where decoding changed
    the distribution (sampling settings), the processed probability is shown too.
    """
    processed_differs = bool((capture.processed.chosen_logprob != capture.raw.chosen_logprob).any())
    head = f"{'step':>4}  {'token':<{token_width}} {'prob':>8} {'rank':>5} {'entropy':>7}"
    if processed_differs:
        head += f" {'p(used)':>8}"
    head += "  top alternatives"
    lines = [head, "-" * len(head)]
    for rec in capture.steps:
        alts = [c for c in rec.top if c.token_id != rec.token_id][:alternatives]
        alt_text = "  ".join(f"{_show(c.token, token_width)} {_prob(c.prob)}" for c in alts)
        line = (
            f"{rec.step:>4}  {_show(rec.token, token_width):<{token_width}} {_prob(rec.prob):>8} "
            f"{rec.rank:>5} {rec.entropy:>7.3f}"
        )
        if processed_differs:
            line += f" {_prob(math.exp(rec.processed_logprob)):>8}"
        lines.append(f"{line}  {alt_text}")
    lines += ["", step_legend(processed_differs)]
    return "\n".join(lines)


def step_rows(capture: Capture, k: int) -> pd.DataFrame:
    """One row per generated step: the chosen token, its probability and rank, the entropy, and the top ``k``.

    Columns: ``step``, ``chosen`` (the token, escaped), ``prob`` (raw probability, 4 significant digits),
    ``rank`` (1-based, under the raw logits), ``entropy`` (nats, 3 decimals), then ``#1`` ...
    ``#k``: each candidate as ``"token 12.3%"`` (:func:`~inspector._formatting.format_percent`: a
    random-weights ``0.00199%`` is not cut to ``0.0%``; at most the candidates the capture kept).
    """
    import pandas as pd

    from inspector._formatting import format_percent

    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer (candidates per step), got {k!r}")
    rows = []
    for s in capture.steps:
        row: dict[str, object] = {"step": s.step, "chosen": repr(s.token)[1:-1], "prob": float(f"{s.prob:.4g}"),
                                  "rank": s.rank, "entropy": round(s.entropy, 3)}
        for i, c in enumerate(s.top[: int(k)], 1):
            row[f"#{i}"] = f"{repr(c.token)[1:-1]} {format_percent(c.prob)}"
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["step", "chosen", "prob", "rank", "entropy"])


def capture_report(capture: Capture) -> str:
    """Header (model, weights, prompt, generated or forced text, stop reason) followed by the step table."""
    m = capture.meta
    lines = []
    if m.random_weights:
        lines.append(RANDOM_WEIGHTS_BANNER)
    kept = capture.attentions if capture.attentions is not None else capture.step_attentions
    att = "not kept" if kept is None else "x".join(map(str, kept.shape))
    if kept is not None and not capture.attention_layout.is_full:
        att += f" ({capture.attention_layout.describe()})"
    if is_forced(capture):
        continuation = f"forced continuation ({capture.num_steps} tokens): {capture.generated_text!r}"
    else:
        continuation = (f"generated ({capture.num_steps} tokens, stopped by {capture.stop_reason}): "
                        f"{capture.generated_text!r}")
    lines += [
        f"model: {m.model} ({'random' if m.random_weights else 'pretrained'} weights) on {m.device}, {m.dtype}",
        f"prompt ({capture.prompt_len} tokens): {capture.prompt_text!r}",
        continuation,
        f"attention {'[layer, head, query, key]' if capture.step_attentions is None else '[layer, head, step, key]'}:"
        f" {att}",
        "",
        step_table(capture),
    ]
    return "\n".join(lines)
