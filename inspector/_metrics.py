"""Per-turn summary metrics of a capture: next-token statistics and where generated tokens look.

Pure functions of a :class:`~inspector._records.capture.Capture` (and the prompt's token
segments, see :mod:`inspector.data.prompts`); nothing here runs the model or writes.

Attention shares are computed from the **query rows of the generated tokens**
(positions ``prompt_len .. seq_len - 1``; the row of generated token ``i`` is the
attention it paid when it was fed back to predict token ``i + 1``). For every layer
``l``, head ``h`` and generated row ``q``, the share of a key set ``K`` is
``sum_{k in K} att[l, h, q, k]`` (a row sums to 1 over keys ``0..q``); the reported
value is the plain mean over all layers, heads and generated rows. So:

* ``attn_prompt_share``: keys ``< prompt_len``; ``attn_generated_share``: keys
  ``>= prompt_len`` (the generated tokens so far, itself included); the two sum to 1;
* ``attn_first_share``: key 0, the first prompt token (the usual "attention sink");
* ``attn_last_user_turn``: prompt tokens of the turn being answered (marker and text);
* ``attn_earlier_turns``: prompt tokens of earlier context turns;
* ``attn_reply_cue``: the final ``Agent:`` cue;
* ``attn_speaker_user`` / ``attn_speaker_agent``: prompt tokens whose speaker is ``User`` /
  ``Agent`` (markers included; the cue counts as ``Agent``).

``last_user_turn + earlier_turns + reply_cue`` and ``speaker_user + speaker_agent`` both
equal ``prompt_share`` minus any header tokens. ``attn_entropy_L{l}`` is the mean over
heads and generated rows of the row entropy (nats) at layer ``l``; ``attn_entropy_mean``
is their mean. Turn and speaker shares are NaN without segments; every attention value is
NaN for a capture without attention weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture
    from inspector.data.prompts import Segment

#: Attention share columns, in order (see the module docstring).
SHARE_COLUMNS: tuple[str, ...] = (
    "attn_prompt_share",
    "attn_generated_share",
    "attn_first_share",
    "attn_last_user_turn",
    "attn_earlier_turns",
    "attn_reply_cue",
    "attn_speaker_user",
    "attn_speaker_agent",
)
_NAN = float("nan")


def entropy_columns(num_layers: int) -> list[str]:
    """``["attn_entropy_mean", "attn_entropy_L0", ...]`` for a model with ``num_layers`` layers."""
    return ["attn_entropy_mean"] + [f"attn_entropy_L{i}" for i in range(num_layers)]


def attention_columns(num_layers: int) -> list[str]:
    return list(SHARE_COLUMNS) + entropy_columns(num_layers)


def score_metrics(capture: Capture) -> dict[str, float | int]:
    """Token counts and raw next-token statistics over the generated steps.

    ``entropy_mean``/``entropy_max``: entropy (nats) of the raw next-token distribution;
    ``chosen_prob_mean``: mean probability of the chosen token; ``chosen_rank_mean``: its
    mean 1-based rank.
    """
    raw = capture.raw
    steps = capture.num_steps
    out: dict[str, float | int] = {"prompt_tokens": int(capture.prompt_len), "generated_tokens": int(steps)}
    if steps == 0:
        out.update(entropy_mean=_NAN, entropy_max=_NAN, chosen_prob_mean=_NAN, chosen_rank_mean=_NAN)
        return out
    ent = raw.entropy.double()
    out["entropy_mean"] = float(ent.mean())
    out["entropy_max"] = float(ent.max())
    out["chosen_prob_mean"] = float(raw.chosen_logprob.double().exp().mean())
    out["chosen_rank_mean"] = float(raw.chosen_rank.double().mean())
    return out


def key_masks(prompt_len: int, seq_len: int, segments: Sequence[Segment] | None,
              turn: int | None) -> dict[str, torch.Tensor]:
    """Boolean ``[seq]`` key sets for every share in :data:`SHARE_COLUMNS` (``None`` when undefined)."""
    pos = torch.arange(seq_len)
    masks: dict[str, Any] = {
        "attn_prompt_share": pos < prompt_len,
        "attn_generated_share": pos >= prompt_len,
        "attn_first_share": pos == 0,
    }
    names = ("attn_last_user_turn", "attn_earlier_turns", "attn_reply_cue", "attn_speaker_user", "attn_speaker_agent")
    if not segments:
        masks.update({n: None for n in names})
        return masks
    for n in names:
        masks[n] = torch.zeros(seq_len, dtype=torch.bool)
    for s in segments:
        end = min(s.end, prompt_len)
        if s.start >= end:
            continue
        span = slice(s.start, end)
        if turn is not None and s.turn is not None and s.role != "cue":
            if s.turn == turn:
                masks["attn_last_user_turn"][span] = True
            elif s.turn < turn:
                masks["attn_earlier_turns"][span] = True
        if s.role == "cue":
            masks["attn_reply_cue"][span] = True
        if s.speaker == "User":
            masks["attn_speaker_user"][span] = True
        elif s.speaker == "Agent":
            masks["attn_speaker_agent"][span] = True
    if turn is None:
        masks["attn_last_user_turn"] = masks["attn_earlier_turns"] = None
    return masks


def attention_metrics(
    attentions: torch.Tensor,
    prompt_len: int,
    segments: Sequence[Segment] | None = None,
    turn: int | None = None,
) -> dict[str, float]:
    """Shares and entropies from the generated query rows (see the module docstring).

    Args:
        attentions: ``[layer, head, query, key]`` over the whole sequence.
        prompt_len: number of prompt tokens.
        segments: prompt token segments (``None``: turn and speaker shares are NaN).
        turn: the dialogue turn being answered (``None``: turn shares are NaN).
    """
    if attentions.dim() != 4 or attentions.shape[2] != attentions.shape[3]:
        raise ValueError(f"attentions must be [layer, head, seq, seq], got {tuple(attentions.shape)}")
    n_layers, seq = int(attentions.shape[0]), int(attentions.shape[-1])
    if not 0 < prompt_len <= seq:
        raise ValueError(f"prompt_len={prompt_len} must be in 1..{seq}")
    out: dict[str, float] = {}
    if prompt_len == seq:  # nothing generated
        return {c: _NAN for c in attention_columns(n_layers)}
    rows = attentions[:, :, prompt_len:, :].float()  # [layer, head, gen, key]
    masks = key_masks(prompt_len, seq, segments, turn)
    defined = [n for n in SHARE_COLUMNS if masks[n] is not None]
    mat = torch.stack([masks[n] for n in defined], dim=1).float()  # [key, m]
    shares = (rows @ mat).mean(dim=(0, 1, 2)).double()  # [m]
    for n in SHARE_COLUMNS:
        out[n] = float(shares[defined.index(n)]) if n in defined else _NAN
    ent = torch.special.entr(rows).sum(-1).double()  # [layer, head, gen]
    per_layer = ent.mean(dim=(1, 2))
    out["attn_entropy_mean"] = float(per_layer.mean())
    for i in range(n_layers):
        out[f"attn_entropy_L{i}"] = float(per_layer[i])
    return out


def empty_attention_metrics(num_layers: int) -> dict[str, float]:
    """All attention columns as NaN (a capture kept without attention)."""
    return {c: _NAN for c in attention_columns(num_layers)}


def turn_metrics(
    capture: Capture,
    segments: Sequence[Segment] | None = None,
    turn: int | None = None,
    num_layers: int | None = None,
) -> dict[str, Any]:
    """Every per-turn metric of a capture: :func:`score_metrics` plus :func:`attention_metrics`.

    ``segments`` and ``turn`` default to those stored in ``capture.meta.source`` by a
    DailyDialog prompt. ``num_layers`` sizes the NaN entropy columns of a capture kept
    without attention (default: the capture's own layer count, 0 when unknown).
    """
    from inspector.data.prompts import segments_from_source

    source: Mapping[str, Any] = capture.meta.source or {}
    if segments is None:
        segments = segments_from_source(source)
    if turn is None and source.get("turn") is not None:
        turn = int(source["turn"])
    out: dict[str, Any] = dict(score_metrics(capture))
    if capture.attentions is None:
        out.update(empty_attention_metrics(num_layers if num_layers is not None else 0))
    else:
        out.update(attention_metrics(capture.attentions, capture.prompt_len, segments, turn))
    return out
