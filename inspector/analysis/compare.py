"""Comparing two captures step by step (KL, top-1 agreement, attention difference), and the beams of one search.

**Alignment.** Two next-token distributions are comparable only when they condition
on the same tokens. ``align="prefix"`` compares the steps whose whole context (prompt
and generated tokens so far) is in the two captures' shared token prefix: two
decoding settings or two models on one prompt. ``align="generated"`` compares step
``i`` with step ``i`` while the generated tokens before it agree, whatever the
prompts: two prompts. ``"auto"`` (default) is ``"prefix"`` when the shared prefix covers
both prompts, else ``"generated"``. Where no step aligns, :class:`CompareError`.
The captures must share a tokenizer (token ids are compared).

**Which distributions.** ``distributions="processed"`` (default) compares what each run
decoded from: the scores after its temperature, top-k, top-p and repetition penalty
(``Capture.processed``), so two decodings of one prompt with different settings differ
even though their model distributions (which depend only on the context) are equal.
``distributions="raw"`` compares the model distributions (``Capture.raw``). Top-1
agreement is of the same distributions.

**KL.** ``KL(a || b)`` in nats. Exact (``kl_method="exact"``) from full logits
(``keep_logits=True``): for ``"raw"`` always; for ``"processed"`` when each capture's
stored settings let the processed scores be rebuilt from its raw logits without the
context: no repetition penalty, no top-k or top-p filter (greedy and beam search decode from
the raw distribution, sampling at temperature ``T`` from ``softmax(logits / T)``), checked
against the stored processed log-probability of every chosen token. Otherwise it is
computed from the stored top-k lists (raw or processed) over a coarser partition: each
token in both top-k lists, plus one bucket holding all remaining mass. Coarse-graining
never increases KL (data-processing inequality), so this ``"topk-bound"`` is a *lower
bound* of the exact KL, tight when the top-k lists hold nearly all the mass, and 0 when
they share no token. (The remaining mass is 1 minus the top-k mass of float32
log-probs; when it is below ~1e-5 its rounding can move the bound by up to ~1e-3
nats.) A token that ``a`` could pick and ``b``'s filter removed (log-probability
``-inf`` in ``b``'s top-k) makes the KL ``inf``, as it is.

**Settings and interventions.** ``CaptureComparison.setting_differences`` lists what
differs between the two captures' stored model, decoding settings and prompt template
(``CaptureComparison.warnings`` says it in words); ``interventions`` names each run's
recorded ablation or patch. The fraction of a clean log-probability a patch restores
(causal tracing) is :func:`inspector.analysis.tracing.restored_fraction`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from inspector.analysis.choices import ALIGN_CHOICES, DISTRIBUTION_CHOICES, KL_CHOICES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector._records.capture import Capture, TokenScores

#: Stored generation settings that change what is decoded (the others only change what is recorded).
DECODING_SETTINGS: tuple[str, ...] = (
    "max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams", "num_return_sequences",
    "repetition_penalty", "stop_strings", "seed", "prompt_truncated_tokens", "mode",
)
#: ``CaptureMeta`` fields that say which model produced a capture.
MODEL_FIELDS: tuple[str, ...] = ("model", "revision", "tokenizer", "dtype", "random_weights", "model_file")
#: Where a recorded intervention may live: a ``CaptureMeta`` field or a key of ``meta.extra``.
INTERVENTION_KEYS: tuple[str, ...] = ("ablate", "ablation", "ablate_mode", "patch", "patching", "intervention")


class CompareError(ValueError):
    """Two captures cannot be compared (no aligned step, different vocabularies, ...)."""


@dataclass(frozen=True)
class CaptureComparison:
    """Capture ``a`` against capture ``b`` over their ``n`` aligned steps.

    Attributes:
        align: ``"prefix"`` or ``"generated"`` (see the module docstring).
        steps_a, steps_b: ``[n]`` int64, the step index in each capture of each compared step.
        chosen_a, chosen_b: ``[n]`` int64, the token each capture generated at that step.
        kl: ``[n]`` float32, ``KL(a || b)`` of the compared next-token distributions, nats.
        kl_method: ``"exact"`` (full logits) or ``"topk-bound"`` (a lower bound from the top-k).
        top1_agree: ``[n]`` bool, the two compared distributions have the same most likely token.
        first_divergence: index into the compared steps of the first step where the
            captures generated different tokens; ``None`` when they never part there.
        shared_len: length of the shared token prefix (``"prefix"``) or of the shared
            generated prefix (``"generated"``).
        attention_diff: ``[layer, head, shared_len, shared_len]`` float32, attention of
            ``a`` minus ``b`` over the shared tokens (``"prefix"`` only, and only when
            both kept attention of one shape; else ``None``).
        distributions: ``"processed"`` (what each run decoded from) or ``"raw"`` (the model's).
        setting_differences: ``(name, value in a, value in b)`` for every stored model field,
            decoding setting (:data:`DECODING_SETTINGS`) and prompt template that differ.
        interventions: ``(of a, of b)``, each run's recorded ablation or patch in words (``""``: none).
        first_divergent_labels: the display strings of :attr:`first_divergent_tokens` (``None``: none).
    """

    align: str
    steps_a: torch.Tensor
    steps_b: torch.Tensor
    chosen_a: torch.Tensor
    chosen_b: torch.Tensor
    kl: torch.Tensor
    kl_method: str
    top1_agree: torch.Tensor
    first_divergence: int | None
    shared_len: int
    attention_diff: torch.Tensor | None = None
    distributions: str = "processed"
    setting_differences: tuple[tuple[str, Any, Any], ...] = ()
    interventions: tuple[str, str] = ("", "")
    first_divergent_labels: tuple[str, str] | None = None

    @property
    def num_steps(self) -> int:
        return int(self.steps_a.shape[0])

    @property
    def agreement(self) -> float:
        """Share of compared steps whose most likely tokens agree."""
        return float(self.top1_agree.float().mean())

    @property
    def first_divergent_step(self) -> int | None:
        """Step index in ``a`` of the first compared step where the generated tokens differ (``None``: none)."""
        return None if self.first_divergence is None else int(self.steps_a[self.first_divergence])

    @property
    def first_divergent_tokens(self) -> tuple[int, int] | None:
        """``(token of a, token of b)`` at the first divergent step (``None``: none)."""
        i = self.first_divergence
        return None if i is None else (int(self.chosen_a[i]), int(self.chosen_b[i]))

    @property
    def warnings(self) -> list[str]:
        """One line per stored setting that differs between the two runs (empty when none does)."""
        return setting_warnings(self.setting_differences)

    def describe(self, names: tuple[str, str] = ("A", "B")) -> str:
        """What was compared, in words: distributions, KL method, agreement, first divergence, warnings."""
        from inspector._formatting import format_percent, format_value

        lines = [f"{names[0]} vs {names[1]}: {self.distributions} distributions (what each run "
                 f"{'decoded from' if self.distributions == 'processed' else 'the model gave, before decoding'}), "
                 f"{self.num_steps} steps aligned by {self.align}, KL {self.kl_method}"]
        kl = self.kl.double()
        lines.append(f"KL({names[0]} || {names[1]}) per step: mean {format_value(float(kl.mean()))}, "
                     f"max {format_value(float(kl.max()))} nats; top-1 agreement {format_percent(self.agreement)} "
                     f"({int(self.top1_agree.sum())}/{self.num_steps} steps)")
        tokens, labels = self.first_divergent_tokens, self.first_divergent_labels or ("", "")
        shown = [f"{t}" + (f" ({lab!r})" if lab else "") for t, lab in zip(tokens or (), labels, strict=False)]
        lines.append("first divergent token: none" if tokens is None else
                     f"first divergent token: step {self.first_divergent_step}, {names[0]} {shown[0]} vs "
                     f"{names[1]} {shown[1]}")
        for name, what in zip(names, self.interventions, strict=True):
            if what:
                lines.append(f"{name} {what}")
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def to_frame(self) -> pd.DataFrame:
        """One row per compared step: ``step_a, step_b, token_a, token_b, kl, top1_agree, same_token``."""
        import pandas as pd

        return pd.DataFrame({
            "step_a": self.steps_a.numpy(), "step_b": self.steps_b.numpy(),
            "token_a": self.chosen_a.numpy(), "token_b": self.chosen_b.numpy(),
            "kl": self.kl.numpy(), "top1_agree": self.top1_agree.numpy(),
            "same_token": (self.chosen_a == self.chosen_b).numpy(),
        })


def setting_differences(a: Capture, b: Capture) -> tuple[tuple[str, Any, Any], ...]:
    """``(name, a's value, b's value)`` of each stored model field (:data:`MODEL_FIELDS`), decoding setting
    (:data:`DECODING_SETTINGS`, ``generation.<name>``) and prompt template (``source.template``) that differ.

    A setting stored in one capture only counts as different (its value in the other is ``None``).
    """
    out = [(name, getattr(a.meta, name, None), getattr(b.meta, name, None)) for name in MODEL_FIELDS]
    out += _differing("generation.", a.meta.generation, b.meta.generation, DECODING_SETTINGS)
    out.append(("source.template", a.meta.source.get("template"), b.meta.source.get("template")))
    return tuple(d for d in out if d[1] != d[2])


def run_setting_differences(a: dict[str, Any], b: dict[str, Any]) -> tuple[tuple[str, Any, Any], ...]:
    """The same for two corpus runs, from their ``run.json`` contents (``Run.settings``): ``model.<field>``
    (name, revision, dtype, random weights), ``generation.<setting>`` and ``prompt.<field>`` (template, context)."""
    model_keys = ("name", "revision", "dtype", "random_weights")
    out = _differing("model.", a.get("model") or {}, b.get("model") or {}, model_keys)
    out += _differing("generation.", a.get("generation") or {}, b.get("generation") or {}, DECODING_SETTINGS)
    pa, pb = a.get("prompt") or {}, b.get("prompt") or {}
    return tuple(out + _differing("prompt.", pa, pb, sorted(set(pa) | set(pb))))


def _differing(prefix: str, a: dict[str, Any], b: dict[str, Any], keys: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """``(prefix + key, a[key], b[key])`` for the keys whose values differ (lists read as tuples, absent as None)."""
    def get(d: dict[str, Any], key: str) -> Any:
        v = d.get(key)
        return tuple(v) if isinstance(v, list) else v

    return [(prefix + k, get(a, k), get(b, k)) for k in keys if get(a, k) != get(b, k)]


def setting_warnings(differences: Sequence[tuple[str, Any, Any]], names: tuple[str, str] = ("A", "B")) -> list[str]:
    """One line per difference: ``settings differ: generation.temperature 1.0 (A) vs 2.0 (B)``."""
    return [f"settings differ: {k} {va!r} ({names[0]}) vs {vb!r} ({names[1]})" for k, va, vb in differences]


def intervention(capture: Capture) -> str:
    """A capture's recorded ablation or patch in words (``"ablated: L0.H1 (zero)"``, ``"patched: layer 2 at
    position 5 from 'The cat'"``), ``""`` when none: read from ``meta.interventions`` (or ``meta.extra``)."""
    meta = capture.meta
    record = dict(meta.extra)
    record.update(getattr(meta, "interventions", None) or {})
    found = {k: record[k] for k in INTERVENTION_KEYS if record.get(k) not in (None, "", [], (), {})}
    parts = []
    ablated = found.get("ablate", found.get("ablation"))
    if ablated is not None:
        mode = found.get("ablate_mode")
        parts.append(f"ablated: {_words(ablated)}" + (f" ({mode})" if isinstance(mode, str) else ""))
    patched = found.get("patch", found.get("patching"))
    if patched is not None:
        pairs = [f"layer {p[0]} at position {p[1]}" if isinstance(p, (list, tuple)) and len(p) == 2 else _words(p)
                 for p in (patched if isinstance(patched, (list, tuple)) else [patched])]
        src = record.get("patch_source") or {}
        origin = src.get("path") or (repr(src["prompt_text"]) if src.get("prompt_text") is not None else None)
        parts.append(f"patched: {', '.join(pairs)}" + (f" from {origin}" if origin else ""))
    if "intervention" in found:
        parts.append(f"intervention: {_words(found['intervention'])}")
    return "; ".join(parts)


def _words(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_words(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_words(v)}" for k, v in value.items())
    return str(value)


def _common_prefix(x: torch.Tensor, y: torch.Tensor) -> int:
    n = min(x.numel(), y.numel())
    differ = (x[:n] != y[:n]).nonzero()
    return int(differ[0, 0]) if differ.numel() else n


def _aligned_steps(a: Capture, b: Capture, align: str) -> tuple[str, int, torch.Tensor, torch.Tensor]:
    """``(align, shared_len, steps_a [n], steps_b [n])``."""
    if align not in ALIGN_CHOICES:
        raise ValueError(f"align must be one of {ALIGN_CHOICES}, got {align!r}")
    if a.num_steps == 0 or b.num_steps == 0:
        raise CompareError("both captures need at least one generated step to compare")
    shared = _common_prefix(a.token_ids, b.token_ids)
    pa, pb = a.prompt_len, b.prompt_len
    if align == "auto":
        align = "prefix" if max(pa, pb) <= shared else "generated"
    if align == "prefix":
        # Step s of a predicts position pa + s from tokens[:pa + s]; comparable when that context is shared.
        first, last = max(pa, pb), min(shared, a.seq_len - 1, b.seq_len - 1)
        contexts = torch.arange(first, max(first, last + 1))
        if contexts.numel() == 0:
            raise CompareError(
                f"no step has the same context in both captures: they share their first {shared} tokens, "
                f"but their prompts are {pa} and {pb} tokens long; use align='generated' to compare "
                "step i with step i from each prompt's end"
            )
        return align, shared, contexts - pa, contexts - pb
    gshared = _common_prefix(a.generated_ids, b.generated_ids)
    steps = torch.arange(min(gshared, a.num_steps - 1, b.num_steps - 1) + 1)
    return align, gshared, steps, steps.clone()


def _exact_kl(la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    """``[n]`` KL of the softmax of logit rows ``la``, ``lb`` ``[n, vocab]`` (``-inf`` logits allowed)."""
    if la.shape[-1] != lb.shape[-1]:
        raise CompareError(f"the captures' vocabularies differ ({la.shape[-1]} vs {lb.shape[-1]} logits)")
    pa, pb = torch.log_softmax(la.double(), -1), torch.log_softmax(lb.double(), -1)
    terms = torch.where(pa.isfinite(), pa.exp() * (pa - pb), 0.0)
    return terms.sum(-1).clamp(min=0).float()


def processed_logits(capture: Capture, steps: torch.Tensor) -> torch.Tensor | None:
    """``[n, vocab]`` scores whose softmax is the processed distribution of ``steps`` ``[n]``, rebuilt from the
    kept raw logits, or ``None`` where that is not possible without the context (no logits kept, a repetition
    penalty, a top-k or top-p filter, or settings not stored) or the rebuilt scores disagree with the stored
    processed log-probability of a chosen token (by more than 1e-3 nats). Beam search processes log-probabilities
    rather than logits, which gives the same distribution under a temperature."""
    g = capture.meta.generation
    if capture.logits is None or not g:
        return None
    if float(g.get("repetition_penalty", 1.0)) != 1.0:
        return None
    logits = capture.logits[steps].double()
    if g.get("do_sample"):
        if g.get("top_k") or float(g.get("top_p", 1.0)) < 1.0:
            return None
        logits = logits / float(g.get("temperature", 1.0))
    chosen = capture.generated_ids[steps]
    rebuilt = torch.log_softmax(logits, -1).gather(1, chosen[:, None])[:, 0]
    if not torch.allclose(rebuilt, capture.processed.chosen_logprob[steps].double(), atol=1e-3, rtol=0):
        return None
    return logits


def _topk_kl(a: TokenScores, b: TokenScores, sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    ids_a, lp_a = a.topk_ids[sa], a.topk_logprobs[sa].double()
    ids_b, lp_b = b.topk_ids[sb], b.topk_logprobs[sb].double()
    match = ids_a[:, :, None] == ids_b[:, None, :]  # [n, ka, kb]
    in_b, in_a = match.any(2), match.any(1)
    lp_b_at_a = torch.where(match, lp_b[:, None, :], 0.0).sum(2)  # b's log-prob of a's token where shared
    # a token a's filter removed (-inf) carries no mass: its term is 0, not 0 * (-inf - x)
    shared_term = torch.where(in_b & lp_a.isfinite(), lp_a.exp() * (lp_a - lp_b_at_a), 0.0).sum(1)
    rest_a = (1 - torch.where(in_b, lp_a.exp(), 0.0).sum(1)).clamp(min=0)
    # The stored log-probabilities are float32: "1 - sum" of b's shared mass can round to 0 (or below)
    # when the true remainder is tiny but positive, and the rest term would explode. Adding float32's
    # rounding slack can only overstate b's remainder, and the term falls as that remainder grows,
    # so the result stays a lower bound of the exact KL.
    slack = (ids_b.shape[1] + 1) * float(torch.finfo(torch.float32).eps)
    rest_b = (1 - torch.where(in_a, lp_b.exp(), 0.0).sum(1)).clamp(min=0) + slack
    tiny = torch.finfo(torch.float64).tiny
    rest_term = torch.where(rest_a > 0, rest_a * (rest_a.clamp(min=tiny).log() - rest_b.clamp(min=tiny).log()), 0.0)
    return (shared_term + rest_term).clamp(min=0).float()


def compare_captures(a: Capture, b: Capture, align: str = "auto", kl: str = "auto",
                     distributions: str = "processed") -> CaptureComparison:
    """Compare capture ``a`` with capture ``b`` step by step; see the module docstring.

    Args:
        align: ``"auto"``, ``"prefix"`` or ``"generated"``.
        kl: ``"auto"`` (exact where both captures' distributions can be had in full, else the top-k
            bound), ``"exact"`` (requires ``keep_logits=True`` captures, and for ``"processed"``
            settings the processed scores can be rebuilt from) or ``"topk"``.
        distributions: ``"processed"`` (default: what each run decoded from) or ``"raw"`` (the model's).

    Raises:
        CompareError: no step aligns, or the vocabularies differ.
        ValueError: an unknown option, or ``kl="exact"`` where the full distributions are not at hand.
    """
    if kl not in KL_CHOICES:
        raise ValueError(f"kl must be one of {KL_CHOICES}, got {kl!r}")
    if distributions not in DISTRIBUTION_CHOICES:
        raise ValueError(f"distributions must be one of {DISTRIBUTION_CHOICES}, got {distributions!r}")
    have_logits = a.logits is not None and b.logits is not None
    if kl == "exact" and not have_logits:
        raise ValueError("kl='exact' needs full logits in both captures: capture with keep_logits=True, "
                         "or use kl='topk' for a lower bound from the top-k lists")
    align, shared, sa, sb = _aligned_steps(a, b, align)
    full: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
    if kl != "topk" and a.logits is not None and b.logits is not None:
        full = ((a.logits[sa], b.logits[sb]) if distributions == "raw"
                else (processed_logits(a, sa), processed_logits(b, sb)))
        if kl == "exact" and (full[0] is None or full[1] is None):
            raise ValueError("kl='exact' on processed distributions needs settings whose processed scores follow "
                             "from the raw logits alone (no repetition penalty, top-k or top-p); use "
                             "distributions='raw', or kl='topk' for a lower bound from the processed top-k lists")
    sc_a, sc_b = (a.raw, b.raw) if distributions == "raw" else (a.processed, b.processed)
    if full[0] is not None and full[1] is not None:
        kl_values, method = _exact_kl(full[0].float(), full[1].float()), "exact"
    else:
        kl_values, method = _topk_kl(sc_a, sc_b, sa, sb), "topk-bound"
    chosen_a, chosen_b = a.token_ids[a.prompt_len + sa], b.token_ids[b.prompt_len + sb]
    differ = (chosen_a != chosen_b).nonzero()
    first = int(differ[0, 0]) if differ.numel() else None
    diff = None
    if align == "prefix" and a.attentions is not None and b.attentions is not None \
            and a.attentions.shape[:2] == b.attentions.shape[:2]:
        diff = a.attentions[:, :, :shared, :shared].float() - b.attentions[:, :, :shared, :shared].float()
    return CaptureComparison(
        align=align, steps_a=sa, steps_b=sb, chosen_a=chosen_a, chosen_b=chosen_b, kl=kl_values, kl_method=method,
        top1_agree=sc_a.topk_ids[sa, 0] == sc_b.topk_ids[sb, 0],
        first_divergence=first, shared_len=shared, attention_diff=diff, distributions=distributions,
        setting_differences=setting_differences(a, b), interventions=(intervention(a), intervention(b)),
        first_divergent_labels=None if first is None else (a.tokens[a.prompt_len + int(sa[first])],
                                                           b.tokens[b.prompt_len + int(sb[first])]),
    )


def compare_beams(beams: Sequence[Capture], reference: int = 0, **options: Any) -> list[CaptureComparison]:
    """Beam ``reference`` (the best, by default) against every other beam of one search, aligned by prefix.

    Returns one :class:`CaptureComparison` per other beam, in beam order, with ``a`` the reference
    (so ``kl`` is ``KL(reference || beam)``).
    ``options`` go to :func:`compare_captures` (``kl=``, ``distributions=``).
    """
    if len(beams) < 2:
        raise CompareError(f"comparing beams needs at least two captures, got {len(beams)}")
    if not 0 <= reference < len(beams):
        raise ValueError(f"reference must be a beam index within 0..{len(beams) - 1}, got {reference}")
    ref = beams[reference]
    for i, beam in enumerate(beams):
        if beam.prompt_len != ref.prompt_len or not torch.equal(beam.token_ids[: beam.prompt_len],
                                                                ref.token_ids[: ref.prompt_len]):
            raise CompareError(f"beam {i} has another prompt than beam {reference}: not one beam search")
    return [compare_captures(ref, beam, align="prefix", **options) for i, beam in enumerate(beams) if i != reference]
