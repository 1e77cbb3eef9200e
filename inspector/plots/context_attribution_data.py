"""The numbers of the context-attribution figure: the text, each token coloured by its score for one step.

Both renderers (:mod:`inspector.plots.static.context_attribution`, :mod:`inspector.plots.interactive.
context_attribution`) draw from :class:`ContextAttributionData`; the attribution itself is
:func:`inspector.analysis.context_attribution.context_attribution`, computed here when not given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inspector.plots.labels import capture_title, check_index, quoted_token
from inspector.plots.text_data import rgba_hex

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture
    from inspector.analysis.context_attribution import ContextAttribution

#: Diverging colour map: red raised the token's log-probability, blue lowered it, white did nothing.
ATTRIBUTION_CMAP = "RdBu_r"
#: The readable name of each method, for titles.
METHOD_LABELS: dict[str, str] = {
    "input_x_gradient": "input x gradient",
    "integrated_gradients": "integrated gradients",
    "occlusion": "occlusion",
}
#: What the colour means, under the figure.
UNIT = "change in log-probability of the explained token (nats)"


@dataclass(frozen=True)
class AttributedToken:
    """One token of the text.

    ``role``: ``"prompt"`` or ``"reply"`` (an input of the step, coloured by ``score``), ``"target"`` (the
    token the step produced: outlined, no score) or ``"later"`` (after it, grey, no score).
    """

    text: str
    position: int
    role: str
    score: float
    colour: str | None
    ink: str


@dataclass(frozen=True)
class ContextAttributionData:
    """What the figure draws: ``tokens`` in order, coloured on ``cmap`` from ``-vmax`` to ``vmax``.

    Attributes:
        tokens: every token of the sequence (prompt then reply).
        step: the generated step explained (0-based); its token is at ``prompt_len + step``.
        vmax: the largest absolute score of the step (the colour scale is symmetric around 0).
        total: the sum of the step's scores; ``target``: the token's log-probability.
        method: the attribution method's name.
        title: names the method, the step, the token and the unit.
        legend: what the colours mean.
    """

    tokens: list[AttributedToken]
    step: int
    vmax: float
    total: float
    target: float
    method: str
    cmap: str
    title: str
    legend: str


def attribution_colour(score: float, vmax: float) -> tuple[float, float, float, float]:
    """The colour of ``score`` on a scale from ``-vmax`` (blue) through 0 (white) to ``vmax`` (red)."""
    from matplotlib import colormaps

    frac = 0.5 if vmax <= 0 or math.isnan(score) else 0.5 + 0.5 * max(-1.0, min(1.0, score / vmax))
    r, g, b, a = colormaps[ATTRIBUTION_CMAP](0.1 + 0.8 * frac)  # off the darkest ends, so text stays readable
    return float(r), float(g), float(b), float(a)


def _ink(rgba: tuple[float, float, float, float]) -> str:
    r, g, b = rgba[:3]
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "#ffffff"


def context_attribution_data(
    capture: Capture,
    model: Any = None,
    attribution: ContextAttribution | None = None,
    method: str | None = None,
    steps: int | None = None,
    step: int | None = None,
) -> ContextAttributionData:
    """The text of ``capture`` coloured by each token's score for generated step ``step``.

    Args:
        capture: the capture explained.
        model: the capture's model (:func:`inspector.load_model`), to compute the attribution when
            ``attribution`` is not given.
        attribution: an attribution of this capture (its token ids must match).
        method, steps: the method and integration steps used when computing it (default
            ``"integrated_gradients"``, 32).
        step: the generated step to show, counting from 0, negative from the end (default: the last).
    """
    if attribution is None:
        if model is None:
            raise ValueError("the attribution figure needs the capture's model (model=...) or an attribution")
        from inspector.analysis.context_attribution import context_attribution

        attribution = context_attribution(capture, model, method=method or "integrated_gradients",
                                          steps=32 if steps is None else steps)
    elif method is not None or steps is not None:
        raise ValueError("method and steps choose how to compute the attribution; it was given (attribution=...)")
    if attribution.token_ids.shape != capture.token_ids.shape or not bool(
            (attribution.token_ids == capture.token_ids).all()):
        raise ValueError("the attribution was computed for another sequence than this capture's")
    s = check_index(-1 if step is None else step, attribution.num_steps, "step")
    assert s is not None
    scores = attribution.step_scores(s).tolist()
    vmax = max((abs(v) for v in scores), default=0.0)
    here = capture.prompt_len + s
    tokens: list[AttributedToken] = []
    for pos, text in enumerate(capture.tokens):
        if pos < here:
            rgba = attribution_colour(scores[pos], vmax)
            role = "prompt" if pos < capture.prompt_len else "reply"
            tokens.append(AttributedToken(text, pos, role, float(scores[pos]), rgba_hex(rgba), _ink(rgba)))
        else:
            role = "target" if pos == here else "later"
            tokens.append(AttributedToken(text, pos, role, float("nan"), None, "#000000" if pos == here else "#999999"))
    name = METHOD_LABELS.get(attribution.method, attribution.method)
    if attribution.method == "integrated_gradients":
        nodes = attribution.steps if attribution.nodes is None else int(attribution.nodes[s])
        name += f", {nodes} steps"
        if attribution.completeness_error is not None:
            name += f", completeness error {float(attribution.completeness_error[s]):.1%}"
    target = float(attribution.target[s])
    what = (f"Context attribution ({name}) of step {s}: {quoted_token(capture.tokens[here])} "
            f"(log p = {target:.3f})\nscores: {UNIT}")
    return ContextAttributionData(
        tokens=tokens, step=s, vmax=vmax, total=float(sum(scores)), target=target, method=attribution.method,
        cmap=ATTRIBUTION_CMAP, title=capture_title(capture, what),
        legend="nats; red raised the explained token's log-probability, blue lowered it; outlined: that token",
    )
