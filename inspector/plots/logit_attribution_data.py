"""The numbers of the logit-attribution figure: parts x steps, or the largest parts of one step.

Both renderers (:mod:`inspector.plots.static.logit_attribution`, :mod:`inspector.plots.interactive.
logit_attribution`) draw from :class:`LogitAttributionData`; the attribution itself is
:func:`inspector.analysis.direct_logit.logit_attribution`, computed here when not given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.plots.labels import capture_title, check_index, display_token

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture
    from inspector.analysis.direct_logit import LogitAttribution

#: How many parts the one-step view shows by default.
TOP_PARTS = 10
#: The figure's name for each attribution target.
TARGET_LABELS: dict[str, str] = {"chosen": "chosen logit", "margin": "margin over the runner-up"}
#: Colours of parts that raise and lower the target.
RAISES, LOWERS = "#b2182b", "#2166ac"


@dataclass(frozen=True)
class LogitAttributionData:
    """What the figure draws.

    Attributes:
        values: ``[component, step]`` float32 logits (the heatmap), or ``[bar]`` for one step (largest
            absolute contribution first).
        names: the row names (``component``), or the bars' names.
        steps: the step of each column (heatmap), or ``[step]`` for one step.
        step_labels: ``"i token"`` for each entry of ``steps``.
        total: ``[len(steps)]`` float32, the target's value at each step (the sum of all its parts).
        step: the one step shown, or ``None`` for the heatmap.
        target: ``"chosen"`` or ``"margin"``.
        title: the figure title (names the target and the unit, logits).
        value_label: the colour bar's or value axis's label.
    """

    values: np.ndarray
    names: list[str]
    steps: list[int]
    step_labels: list[str]
    total: np.ndarray
    step: int | None
    target: str
    title: str
    value_label: str


def attribution_for(capture: Capture, model: Any = None, attribution: LogitAttribution | None = None,
                    target: str | None = None) -> LogitAttribution:
    """``attribution`` as given (checked against ``capture`` and ``target``), else computed with ``model``.

    Raises:
        ValueError: neither given, a target that is not the given attribution's, or an attribution of
            another length than the capture's generation.
    """
    if attribution is None:
        if model is None:
            raise ValueError("the logit-attribution figure runs the model over the capture: pass model= (the model "
                             "that made it; on the command line --model NAME_OR_PATH) or attribution=")
        from inspector.analysis.direct_logit import logit_attribution

        return logit_attribution(capture, model, target=target or "chosen")
    if target is not None and target != attribution.target:
        raise ValueError(f"the attribution given explains the {attribution.target!r} target, not {target!r}")
    if attribution.num_steps != capture.num_steps:
        raise ValueError(f"the attribution has {attribution.num_steps} steps, the capture {capture.num_steps}: "
                         "it is not this capture's")
    return attribution


def logit_attribution_data(
    capture: Capture,
    model: Any = None,
    attribution: LogitAttribution | None = None,
    target: str | None = None,
    step: int | None = None,
    top: int = TOP_PARTS,
) -> LogitAttributionData:
    """The figure's numbers: every part at every step, or (``step`` given, negative counting from the end)
    the ``top`` parts of largest absolute contribution at that step.

    Raises:
        ValueError: see :func:`attribution_for`; a step out of range; ``top`` below 1.
    """
    att = attribution_for(capture, model, attribution, target)
    parts = att.parts.float().numpy()
    totals = att.total.float().numpy()
    labels = [f"{i} {display_token(capture.tokens[capture.prompt_len + i])}" for i in range(att.num_steps)]
    what = TARGET_LABELS[att.target]
    value_label = f"contribution to the {what} (logits)"
    if step is None:
        title = capture_title(capture, f"Direct logit attribution: {what} (logits), parts x steps")
        return LogitAttributionData(values=parts.T.astype(np.float32), names=list(att.names),
                                    steps=list(range(att.num_steps)), step_labels=labels, total=totals,
                                    step=None, target=att.target, title=title, value_label=value_label)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a whole number of parts, at least 1, got {top!r}")
    picked = check_index(step, att.num_steps, "step")
    assert picked is not None
    best = att.top(picked, top)
    title = capture_title(capture, f"Direct logit attribution: {what} at step {labels[picked]} "
                                   f"(total {float(totals[picked]):.3g} logits), top {len(best)} parts")
    return LogitAttributionData(values=np.array([v for _, v in best], dtype=np.float32), names=[n for n, _ in best],
                                steps=[picked], step_labels=[labels[picked]], total=totals[picked:picked + 1],
                                step=picked, target=att.target, title=title, value_label=value_label)
