"""The numbers of the analysis figures: logit-lens grid, attention rollout, head statistics, capture comparison.

Each ``*_data`` function takes its numbers from :mod:`inspector.analysis` once, as
float32 NumPy arrays with the words around them, so that the matplotlib and the plotly
version of a figure show the same data under the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.plots.arrays import causal_mask, to_numpy
from inspector.plots.labels import capture_title, check_index, display_token, token_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector._lens_math import LensResult
    from inspector._records.capture import Capture
    from inspector.analysis.head_stats import HeadStats

#: Above this many positions the lens grid drops the words in its cells (hover still names them).
LENS_TEXT_LIMIT = 48
#: Readable name of each head statistic, for panel titles.
STAT_LABELS: dict[str, str] = {
    "entropy": "entropy (nats)",
    "distance": "mean distance (tokens)",
    "sink": "share on first token",
    "previous": "previous-token score",
    "induction": "induction score",
    "self": "self score",
    "prompt_share": "share on prompt",
    "generated_share": "share on generated",
}


# --------------------------------------------------------------------------- logit lens
@dataclass(frozen=True)
class LensData:
    """The lens grid: rows are hidden-state entries (embeddings, then each layer; the last row
    is the model's output), columns are positions.

    ``probs`` ``[row, col]`` the top-1 probability; ``words`` ``[row][col]`` its token;
    ``target_rank`` / ``target_prob`` ``[row, col]`` of the token the model produced next
    (rank 0 / NaN where none); ``tokens`` the input token at each column's position.
    """

    probs: np.ndarray
    words: list[list[str]]
    target_rank: np.ndarray
    target_prob: np.ndarray
    entries: list[int]
    row_labels: list[str]
    positions: list[int]
    tokens: list[str]
    prompt_len: int
    show_text: bool
    title: str


def _entry_label(entry: int, num_entries: int) -> str:
    if entry == 0:
        return "embeddings"
    if entry == num_entries - 1:
        return f"layer {entry - 1} (output)"
    return f"layer {entry - 1}"


def lens_result(capture: Capture, model: Any = None, lens: LensResult | None = None, k: int = 5,
                positions: Sequence[int] | None = None) -> LensResult:
    """The lens to draw: ``lens`` as given, else the capture's stored lens, else computed with ``model``.

    With ``model`` the capture's own hidden states are used when it kept them, else one
    teacher-forced pass recomputes them (see :func:`inspector.analysis.lens.capture_lens`).
    """
    if lens is not None:
        return lens
    from inspector.analysis.lens import stored_lens

    stored = stored_lens(capture)
    if stored is not None:
        return stored
    if model is None:
        raise ValueError(
            "the logit lens decodes hidden states through the model's final norm and unembedding, which a "
            "capture does not hold: pass model= (the model that made the capture; CLI: --model NAME_OR_PATH)"
        )
    from inspector.analysis.lens import capture_lens

    return capture_lens(capture, model, k=k, positions=positions)


def _lens_word(capture: Capture, model: Any, token_id: int) -> str:
    """A lens top-1 token: the capture's label, or the model's tokenizer for a token the reply never used
    (not ``<26440>``)."""
    tokenizer = getattr(model, "tokenizer", None)
    if token_id in capture.labels or tokenizer is None:
        return capture.label(token_id)
    return token_text(tokenizer, token_id)


def lens_data(capture: Capture, model: Any = None, lens: LensResult | None = None, k: int = 5,
              layers: Sequence[int] | None = None, positions: Sequence[int] | None = None) -> LensData:
    """The lens grid of ``capture`` (see :func:`lens_result` for where the lens comes from).

    ``layers``: hidden-state entries to show (0 = embeddings, ``l`` = output of layer ``l - 1``;
    default all); ``positions``: sequence positions (default all).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    res = lens_result(capture, model, lens, k, positions)
    n_entries = res.num_entries
    entries = list(range(n_entries)) if layers is None else [check_index(e, n_entries, "layer entry") for e in layers]
    if not entries:
        raise ValueError("choose at least one layer entry")
    entries = sorted({int(e) for e in entries if e is not None})
    cols = np.arange(res.positions.numel())
    if positions is not None:
        wanted = {int(p) % capture.seq_len for p in positions}
        cols = np.asarray([i for i, p in enumerate(res.positions.tolist()) if p in wanted], dtype=np.int64)
        if cols.size == 0:
            raise ValueError(f"none of positions {list(positions)} is in this lens")
    pos = [int(p) for p in res.positions[cols].tolist()]
    top1 = res.top1_ids[entries][:, cols].tolist()
    tokens = list(capture.tokens)
    return LensData(
        probs=to_numpy(res.topk_probs[entries][:, cols, 0]),
        words=[[display_token(_lens_word(capture, model, t)) for t in row] for row in top1],
        target_rank=res.target_rank[entries][:, cols].numpy().astype(np.int64),
        target_prob=to_numpy(res.target_prob[entries][:, cols]),
        entries=entries,
        row_labels=[_entry_label(e, n_entries) for e in entries],
        positions=pos,
        tokens=[tokens[p] for p in pos],
        prompt_len=capture.prompt_len,
        show_text=len(pos) <= LENS_TEXT_LIMIT,
        title=capture_title(capture, "Logit lens: the most likely next token at each layer and position"),
    )


# --------------------------------------------------------------------------- rollout
@dataclass(frozen=True)
class RolloutData:
    """``matrix`` ``[query, key]`` float32 rollout (rows sum to 1); ``masked``: keys after the query."""

    matrix: np.ndarray
    masked: np.ndarray
    tokens: list[str]
    prompt_len: int
    description: str
    title: str


def rollout_data(capture: Capture, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                 residual_weight: float = 0.5, norm_weighted: bool = False) -> RolloutData:
    """Attention rollout of ``capture`` (:func:`inspector.analysis.rollout.attention_rollout`).

    ``norm_weighted`` uses the capture's stored value norms (``Capture.value_norms``).
    """
    from inspector.analysis.rollout import attention_rollout

    att = capture.require_attentions()
    norms = None
    if norm_weighted:
        norms = getattr(capture, "value_norms", None)
        if norms is None:
            raise ValueError("norm-weighted rollout needs the value norms, which this capture did not keep: "
                             "capture with value norms, or use raw attention")
    mat = to_numpy(attention_rollout(att, layers=layers, heads=heads, residual_weight=residual_weight, norms=norms))
    parts = [f"residual weight {residual_weight:g}"]
    if layers is not None:
        parts.append("layers " + ",".join(str(i) for i in sorted(layers)))
    if heads is not None:
        parts.append("heads " + ",".join(str(i) for i in heads))
    if norm_weighted:
        parts.append("norm-weighted")
    what = ", ".join(parts)
    return RolloutData(matrix=mat, masked=causal_mask(mat.shape[0]), tokens=list(capture.tokens),
                       prompt_len=capture.prompt_len, description=what,
                       title=capture_title(capture, f"Attention rollout ({what})"))


# --------------------------------------------------------------------------- head statistics
@dataclass(frozen=True)
class HeadStatsData:
    """One ``[layer, head]`` float32 panel per statistic, in :data:`STAT_LABELS` order."""

    names: list[str]
    panels: list[np.ndarray]
    labels: list[str]
    title: str

    @property
    def num_layers(self) -> int:
        return int(self.panels[0].shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.panels[0].shape[1])


def _frame_panels(frame: pd.DataFrame, names: Sequence[str]) -> list[np.ndarray]:
    """``[layer, head]`` panels from a table with one row per (layer, head) (a run's head statistics)."""
    if frame.duplicated(["layer", "head"]).any():
        raise ValueError("the table holds several groups per (layer, head): select one group first, e.g. "
                         "table[table['act'] == 'question']")
    layers, heads = int(frame["layer"].max()) + 1, int(frame["head"].max()) + 1
    out = []
    for name in names:
        panel = np.full((layers, heads), np.nan, dtype=np.float32)
        panel[frame["layer"].to_numpy(int), frame["head"].to_numpy(int)] = frame[name].to_numpy(np.float32)
        out.append(panel)
    return out


def head_stats_data(source: Capture | HeadStats | pd.DataFrame, rows: str = "all",
                   statistics: Sequence[str] | None = None) -> HeadStatsData:
    """Head statistics of a capture (over ``rows``), a ready :class:`HeadStats`, or one group of a
    run's :meth:`~inspector.runs.Run.head_stats` table; ``statistics`` picks the panels (default all)."""
    from inspector.analysis.choices import STATISTICS
    from inspector.analysis.head_stats import HeadStats, capture_head_stats

    names = list(STATISTICS) if statistics is None else list(statistics)
    bad = [n for n in names if n not in STATISTICS]
    if bad or not names:
        raise ValueError(f"unknown statistics {bad}; choose from {list(STATISTICS)}")
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        turns = int(source["turns"].iloc[0]) if "turns" in source and len(source) else 0
        return HeadStatsData(names=names, panels=_frame_panels(source, names),
                             labels=[STAT_LABELS[n] for n in names],
                             title=f"Head statistics over a corpus run ({turns} turns)")
    if isinstance(source, HeadStats):
        stats, title = source, f"Head statistics over {source.rows} query rows ({source.num_rows} rows)"
    else:
        stats = capture_head_stats(source, rows)
        title = capture_title(source, f"Head statistics over {rows} query rows")
    return HeadStatsData(names=names, panels=[to_numpy(stats.statistic(n)) for n in names],
                         labels=[STAT_LABELS[n] for n in names], title=title)


# --------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class CompareData:
    """Capture ``a`` against ``b`` over the aligned steps, plus the attention difference.

    ``steps`` ``[n]`` the step index in ``a``; ``kl`` ``[n]`` nats; ``agree`` ``[n]`` top-1
    agreement; ``first_divergence`` index into the compared steps (``None``: none);
    ``diff`` ``[shared, shared]`` attention of ``a`` minus ``b`` over the shared tokens
    (``None`` when either kept no attention or the alignment is not by prefix);
    ``names`` what the figure calls ``a`` and ``b`` (``"A"``/``"B"``, or ``"beam i"``);
    ``distributions`` ``"processed"`` (what each run decoded from) or ``"raw"`` (the model's);
    ``notes`` each run's recorded intervention and a warning per setting that differs.
    """

    steps: np.ndarray
    kl: np.ndarray
    agree: np.ndarray
    tokens_a: list[str]
    tokens_b: list[str]
    first_divergence: int | None
    kl_method: str
    align: str
    diff: np.ndarray | None
    diff_tokens: list[str]
    prompt_len: int
    diff_description: str
    title: str
    names: tuple[str, str] = ("A", "B")
    distributions: str = "processed"
    notes: tuple[str, ...] = ()


def compare_data(capture: Capture, other: Capture, align: str = "auto", kl: str = "auto",
                 layer: int | None = None, head: int | None = None, distributions: str = "processed") -> CompareData:
    """:func:`inspector.analysis.compare.compare_captures` of ``capture`` (a) against ``other`` (b).

    The difference map is of one ``layer``/``head`` when given, else the mean over them.
    """
    from inspector.analysis.compare import compare_captures

    if not hasattr(other, "require_attentions"):
        raise ValueError(f"the compare figure needs a second capture (other=), got {type(other).__name__}")
    cmp = compare_captures(capture, other, align=align, kl=kl, distributions=distributions)
    return _comparison_data(capture, other, cmp, layer, head, ("A", "B"))


def beams_data(beams: Sequence[Capture], pair: Sequence[int] = (0, 1), kl: str = "auto", layer: int | None = None,
               head: int | None = None, distributions: str = "processed") -> CompareData:
    """Two returned sequences of one search (``beams[i]`` against ``beams[j]`` for ``pair=(i, j)``).

    :func:`inspector.analysis.compare.compare_beams` aligns them by prefix: the steps
    whose whole context the two share, up to the first step where they part. Each is
    named ``"beam n"`` by its rank among the returned sequences (``meta.sequence_index``).
    """
    from inspector.analysis.compare import compare_beams

    if isinstance(beams, (str, bytes)) or not all(hasattr(b, "require_attentions") for b in beams):
        raise ValueError("the beam comparison needs the list of captures one search returned")
    if len(pair) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair):
        raise ValueError(f"pair must be two beam indices (i, j), got {pair!r}")
    i, j = (check_index(x, len(beams), "beam") for x in pair)
    assert i is not None and j is not None
    if i == j:
        raise ValueError(f"pick two different beams to compare, got {i} twice")
    a, b = beams[i], beams[j]
    names = (f"beam {a.meta.sequence_index}", f"beam {b.meta.sequence_index}")
    if names[0] == names[1]:
        names = (f"beam {i}", f"beam {j}")
    return _comparison_data(a, b, compare_beams([a, b], kl=kl, distributions=distributions)[0], layer, head, names)


def comparison_summary(source: Capture | Sequence[Capture], other: Capture | None = None, align: str = "auto",
                       kl: str = "auto", distributions: str = "processed", pair: Sequence[int] = (0, 1),
                       **_figure_options: Any) -> str:
    """The compare figure's comparison in words (``CaptureComparison.describe``): what was compared, KL, top-1
    agreement, first divergent token, interventions and a warning per setting that differs. ``source`` and
    ``other`` as :func:`compare_data`, or the list of one search's captures and ``pair`` as :func:`beams_data`;
    options only the figure uses (``layer``, ``max_labels``, sizes) are accepted and ignored."""
    from inspector.analysis.compare import compare_beams, compare_captures

    if not hasattr(source, "require_attentions"):  # the captures of one search
        assert isinstance(source, Sequence)
        i, j = pair
        names = (f"beam {source[i].meta.sequence_index}", f"beam {source[j].meta.sequence_index}")
        cmp = compare_beams([source[i], source[j]], kl=kl, distributions=distributions)[0]
        return cmp.describe(names if names[0] != names[1] else (f"beam {i}", f"beam {j}"))
    if other is None or isinstance(source, Sequence):
        raise ValueError("the comparison needs a second capture (other=)")
    return compare_captures(source, other, align=align, kl=kl, distributions=distributions).describe()


def _comparison_data(capture: Capture, other: Capture, cmp: Any, layer: int | None, head: int | None,
                     names: tuple[str, str]) -> CompareData:
    diff, what = None, ""
    if cmp.attention_diff is not None:
        d = cmp.attention_diff
        li = check_index(layer, int(d.shape[0]), "layer")
        hi = check_index(head, int(d.shape[1]), "head")
        d = d if li is None else d[li : li + 1]
        d = d if hi is None else d[:, hi : hi + 1]
        diff = to_numpy(d.mean(dim=(0, 1)))
        what = ("layer " + str(li) if li is not None else "mean over layers") + ", " + (
            "head " + str(hi) if hi is not None else "mean over heads")
    gen_a = capture.token_ids[capture.prompt_len + cmp.steps_a]
    gen_b = other.token_ids[other.prompt_len + cmp.steps_b]
    verdict = ("they never part" if cmp.first_divergence is None
               else f"first divergence at step {int(cmp.steps_a[cmp.first_divergence])}")
    notes = tuple(f"{name} {what}" for name, what in zip(names, cmp.interventions, strict=True) if what)
    notes += tuple(f"warning: {w}" for w in cmp.warnings)
    infinite = int(cmp.kl.isinf().sum())
    if infinite:  # drawn as gaps: say why
        notes += (f"KL infinite at {infinite} step(s): {names[1]}'s decoding removed a token {names[0]} could pick",)
    return CompareData(
        steps=cmp.steps_a.numpy().astype(np.int64),
        kl=cmp.kl.numpy().astype(np.float32),
        agree=cmp.top1_agree.numpy().astype(bool),
        tokens_a=[display_token(capture.label(int(t))) for t in gen_a.tolist()],
        tokens_b=[display_token(other.label(int(t))) for t in gen_b.tolist()],
        first_divergence=cmp.first_divergence,
        kl_method=cmp.kl_method,
        align=cmp.align,
        diff=diff,
        diff_tokens=list(capture.tokens[: cmp.shared_len]),
        prompt_len=min(capture.prompt_len, cmp.shared_len),
        diff_description=what,
        title=capture_title(capture, f"{names[0]} vs {names[1]} over {cmp.num_steps} aligned steps of the "
                                     f"{cmp.distributions} distributions (top-1 agreement {cmp.agreement:.0%}, "
                                     f"{verdict})"
                                     + "".join(f"\n{n}" for n in notes)),
        names=names,
        distributions=cmp.distributions,
        notes=notes,
    )
