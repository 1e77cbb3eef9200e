"""The choices a figure is asked for by name: kinds, score sets, colourings, group columns, metric labels.

The CLI's flags and the dashboard's pickers offer these, and the figure builders
check against them, so the three cannot drift apart. Also :func:`default_position`,
the token a token-attention view starts on. Light: no NumPy, no plotting library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector.data.dailydialog import LABEL_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture

#: Figure kinds accepted by :func:`inspector.plots.make_figure` and ``inspector plot --kind``.
KINDS: tuple[str, ...] = ("heatmap", "heads", "topk", "text", "token", "corpus", "lens", "rollout", "head-stats",
                          "compare", "logit-attribution", "attribution")

#: Summary columns a corpus figure can group by (the first is the default): DailyDialog's label columns.
GROUP_COLUMNS: tuple[str, ...] = LABEL_COLUMNS

#: Readable name of each per-turn summary metric, for pickers, panel titles and table headers.
METRIC_LABELS: dict[str, str] = {
    "entropy_mean": "mean entropy (nats)",
    "entropy_max": "max entropy (nats)",
    "chosen_prob_mean": "mean chosen-token probability",
    "attn_prompt_share": "attention share: prompt",
    "attn_generated_share": "attention share: generated",
    "attn_first_share": "attention share: first token",
    "attn_entropy_mean": "mean attention entropy (nats)",
    "attn_last_user_turn": "attention share: last user turn",
    "attn_earlier_turns": "attention share: earlier turns",
    "attn_speaker_user": "attention share: user turns",
    "attn_speaker_agent": "attention share: agent turns",
    "prompt_tokens": "prompt tokens",
    "generated_tokens": "generated tokens",
}

#: What the coloured text's colours show: the chosen token's probability, or the step's entropy.
COLOR_BY: tuple[str, ...] = ("prob", "entropy")
#: Which scores the top-k figure shows: the model's raw logits, or the processed scores decoding picked from.
SCORES: tuple[str, ...] = ("raw", "processed")


def default_position(capture: Capture) -> int:
    """The token a token-attention view starts on: the first generated one (the last, if none was)."""
    return capture.prompt_len if capture.num_steps else capture.seq_len - 1
