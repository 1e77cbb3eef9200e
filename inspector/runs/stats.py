"""Per-label statistics of a run summary: count and means grouped by an act or emotion column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from inspector.data.schema import LABEL_COLUMNS, LABEL_NAMES, NO_LABEL

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Columns a summary can be grouped by (``inspector stats --by``): the label columns.
STATS_BY: tuple[str, ...] = LABEL_COLUMNS
#: Columns averaged by :func:`stats`.
STATS_COLUMNS: tuple[str, ...] = (
    "entropy_mean",
    "chosen_prob_mean",
    "attn_prompt_share",
    "attn_generated_share",
    "attn_first_share",
    "attn_last_user_turn",
    "attn_earlier_turns",
    "attn_speaker_user",
    "attn_speaker_agent",
    # with --score-reference / --condition (inspector.research.turns); absent from other runs' summaries
    "ref_ppl",
    "ref_nll_mean",
    "cond_delta_loglik_mean",
    "cond_kl_mean",
    "attn_condition",
)

#: What each averaged column measures, in which unit (the legend under ``inspector stats``).
STATS_UNITS: dict[str, str] = {
    "entropy_mean": "entropy of the next-token distribution, nats (natural log), mean over the reply's steps",
    "chosen_prob_mean": "probability of the generated token (0..1), mean over steps",
    "attn_prompt_share": "share (0..1) of the generated steps' attention on the prompt",
    "attn_generated_share": "share (0..1) on the reply's own tokens",
    "attn_first_share": "share (0..1) on the first token",
    "attn_last_user_turn": "share (0..1) on the last turn before the reply",
    "attn_earlier_turns": "share (0..1) on earlier turns",
    "attn_speaker_user": "share (0..1) on the user's turns",
    "attn_speaker_agent": "share (0..1) on the agent's turns",
    "ref_ppl": "perplexity of the reference reply (teacher-forced)",
    "ref_nll_mean": "negative log-likelihood of the reference reply, nats per token",
    "cond_delta_loglik_mean": "change in the reference's log-likelihood with the condition stated, nats per token",
    "cond_kl_mean": "KL divergence between conditioned and plain next-token distributions, nats",
    "attn_condition": "share (0..1) of attention on the condition's tokens",
}


def stats(summary: pd.DataFrame, by: str = "emotion", columns: Sequence[str] = STATS_COLUMNS) -> pd.DataFrame:
    """Per-label table: ``count`` and the mean of every column in ``columns``.

    ``by`` is one of :data:`STATS_BY`. Rows follow the label order (inform, question, ...;
    no emotion, anger, ...); turns without the label (the last turn has no response) form
    a :data:`~inspector.data.schema.NO_LABEL` (``"(none)"``) row. NaN values (e.g. attention with
    ``--attention none``) are skipped; a column with no value at all in ``summary`` (e.g. the ``cond_*``
    columns of a run without ``--condition``) is left out. Units: :data:`STATS_UNITS`.
    """
    if by not in STATS_BY:
        raise ValueError(f"cannot group by {by!r}; choose one of {list(STATS_BY)}")
    if by not in summary.columns:
        raise ValueError(f"the summary has no {by!r} column")
    cols = [c for c in columns if c in summary.columns and summary[c].notna().any()]
    key = summary[by].astype(object).where(summary[by].notna(), NO_LABEL)
    grouped = summary[cols].groupby(key, sort=False)
    table = grouped.mean()
    table.insert(0, "count", grouped.size())
    names = list(LABEL_NAMES[by].values())
    order = [n for n in names if n in table.index] + sorted(i for i in table.index if i not in names)
    table = table.loc[order]
    table.index.name = by
    return table


def used_random_weights(settings: Mapping[str, Any]) -> bool:
    """Whether the run whose run.json is ``settings`` generated with random weights (its texts are meaningless).

    run.json records it under ``model.random_weights``; a folder from before that keeps it at the top level.
    """
    model = settings.get("model")
    if isinstance(model, Mapping) and "random_weights" in model:
        return bool(model["random_weights"])
    return bool(settings.get("random_weights", False))
