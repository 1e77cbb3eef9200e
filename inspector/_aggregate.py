"""Pure functions that reduce attention tensors, registered by name.

Every function takes attention shaped ``[layer, head, query, key]`` and never
modifies its input. Reductions are computed in float32 whatever the stored dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch

Reducer = Callable[[torch.Tensor, int], torch.Tensor]


def _mean(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.float().mean(dim=dim)


def _max(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.float().amax(dim=dim)


def _sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.float().sum(dim=dim)


#: Reductions by name. Read-only: pass a function to :func:`aggregate_attention` for a new one.
REDUCERS: Mapping[str, Reducer] = MappingProxyType({"mean": _mean, "max": _max, "sum": _sum})
#: Reducers whose result is not a distribution over keys (rows may sum above 1): figures and the CLI say so.
NOT_A_DISTRIBUTION: frozenset[str] = frozenset({"max", "sum"})

#: Names accepted by ``--agg`` in the CLI and the dashboard. ``"contribution-norm"`` is Kobayashi et al.
#: (2020)'s ``||alpha_ij f(x_j)||``; ``"norm-weighted-renormalised"`` the same with every row divided by its
#: sum; ``"norm-weighted"`` is the renormalised one under its older name (see :func:`aggregate_by_mode`).
AGGREGATE_MODES: tuple[str, ...] = (
    "mean", "max", "stacked-mean", "contribution-norm", "norm-weighted-renormalised", "norm-weighted",
)
#: Modes that need the capture's value norms (``value_norms=`` of :func:`aggregate_by_mode`).
NORM_MODES: tuple[str, ...] = ("contribution-norm", "norm-weighted-renormalised", "norm-weighted")


def _check_attention(att: torch.Tensor) -> None:
    if att.dim() != 4:
        raise ValueError(f"attention must be [layer, head, query, key], got shape {tuple(att.shape)}")


def _reduce(t: torch.Tensor, how: str | int | Reducer | None, dim: int, what: str, size: int) -> torch.Tensor:
    if how is None:
        return t
    if isinstance(how, int):
        if not -size <= how < size:
            raise ValueError(f"{what} {how} out of range: valid {what}s are 0..{size - 1}")
        return t.select(dim, how)
    if callable(how):
        return how(t, dim)
    if how not in REDUCERS:
        raise ValueError(f"unknown {what} reduction {how!r}; choose one of {sorted(REDUCERS)} or an index")
    return REDUCERS[how](t, dim)


def aggregate_attention(
    att: torch.Tensor,
    layers: str | int | Reducer | None = "mean",
    heads: str | int | Reducer | None = "mean",
) -> torch.Tensor:
    """Reduce ``[layer, head, query, key]`` attention over layers and/or heads.

    Args:
        att: ``[layer, head, query, key]``.
        layers: ``"mean"``, ``"max"``, ``"sum"``, a layer index, a reducer ``f(t, dim)``,
            or ``None`` to keep the layer dimension.
        heads: same choices for the head dimension.

    Returns:
        ``[query, key]`` when both are reduced or selected, ``[head, query, key]`` when
        only layers are, ``[layer, query, key]`` when only heads are, else the input
        (as float32).

    ``"mean"`` and a single layer or head keep each row a distribution (it sums to 1); ``"max"`` and
    ``"sum"`` do not: a ``"max"`` row holds each key's largest weight over the layers or heads, and sums
    to more than 1 wherever they look at different keys (see :data:`NOT_A_DISTRIBUTION`).
    """
    _check_attention(att)
    n_layer, n_head = int(att.shape[0]), int(att.shape[1])
    out = _reduce(att, heads, 1, "head", n_head)
    out = _reduce(out, layers, 0, "layer", n_layer)
    return out.float()


def stacked_mean(att: torch.Tensor, prompt_len: int, step: int | None = None) -> torch.Tensor:
    """The notebook's ``torch.stack(output.attentions[step]).mean(dim=0)`` for one sequence.

    The notebook generated with ``use_cache=False``, so step ``s`` recomputed the whole
    sequence of ``prompt_len + s`` tokens; causal attention over a prefix does not depend
    on later tokens, so that matrix is the top-left block of the final one.

    Args:
        att: ``[layer, head, query, key]`` over the final sequence.
        prompt_len: number of prompt tokens.
        step: generated step ``s`` (0 is the prefill), or ``None`` for the whole sequence.

    Returns:
        ``[head, query, key]`` float32, the mean over layers.
    """
    _check_attention(att)
    seq = int(att.shape[-1])
    if step is None:
        return att.float().mean(dim=0)
    n_steps = seq - prompt_len
    if not 0 <= step < n_steps:
        raise ValueError(f"step {step} out of range: valid steps are 0..{n_steps - 1}")
    n = prompt_len + step
    return att[:, :, :n, :n].float().mean(dim=0)


def aggregate_by_mode(
    att: torch.Tensor,
    mode: str,
    layer: int | None = None,
    head: int | None = None,
    value_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[query, key]`` attention for a display mode.

    ``mode`` is one of :data:`AGGREGATE_MODES`. A given ``layer`` and/or ``head`` is
    selected first; the remaining dimensions are reduced with ``mode``. ``"stacked-mean"``
    is the notebook's mean over layers followed by a mean over heads (or the chosen head).
    The value-norm modes use ``value_norms`` ``[layer, head, key]`` (the capture's
    ``||f_h(x_j)||``, ``f_h(x) = (x W_V^h + b_V^h) W_O^h``; see :mod:`inspector._value_math`):

    * ``"contribution-norm"``: Kobayashi et al. (2020)'s ``||alpha_ij f(x_j)||`` =
      ``alpha_ij ||f(x_j)||``, the size of what key ``j`` adds to query ``i``'s output, then the
      mean over layers and heads. Not renormalised: a head whose value vectors are small counts
      less, which is the paper's point; rows do not sum to 1.
    * ``"norm-weighted-renormalised"``: the same products with each row divided by its sum (a
      distribution over keys per head, comparable with raw attention), then the mean. This
      removes each head's overall size. ``"norm-weighted"`` is this mode under its older name.

    Raises:
        ValueError: an unknown mode, or a value-norm mode without value norms (the message
            says to capture again with ``keep_value_norms=True``).
    """
    if mode not in AGGREGATE_MODES:
        raise ValueError(f"unknown aggregate mode {mode!r}; choose one of {list(AGGREGATE_MODES)}")
    if mode in NORM_MODES:
        if value_norms is None:
            raise ValueError(f"{mode} attention needs value norms, and this capture kept none; capture "
                             "again with keep_value_norms=True (CLI: --keep-value-norms)")
        from inspector._value_math import norm_weighted_attention

        weighted = norm_weighted_attention(att, value_norms, renormalise=mode != "contribution-norm")
        return aggregate_attention(weighted, layers="mean" if layer is None else layer,
                                   heads="mean" if head is None else head)
    if mode == "stacked-mean":
        if layer is not None:
            raise ValueError("stacked-mean averages over all layers; drop --layer or use --agg mean")
        return aggregate_attention(att, layers="mean", heads="mean" if head is None else head)
    return aggregate_attention(
        att,
        layers=mode if layer is None else layer,
        heads=mode if head is None else head,
    )


def attention_entropy(att: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each attention row: ``[..., query, key] -> [..., query]``."""
    entropy: torch.Tensor = torch.special.entr(att.float()).sum(dim=-1)
    return entropy


def attention_from(att: torch.Tensor, position: int) -> torch.Tensor:
    """Where one token looks: ``[layer, head, query, key] -> [layer, key]`` (mean over heads)."""
    _check_attention(att)
    seq = int(att.shape[2])
    if not -seq <= position < seq:
        raise ValueError(f"token position {position} out of range: valid positions are 0..{seq - 1}")
    return att[:, :, position, :].float().mean(dim=1)
