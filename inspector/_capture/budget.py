"""A capture's size before it is made, and the memory budget a request must fit.

:func:`estimate_capture` is pure arithmetic on the settings, the model's sizes and the prompt
lengths: the bytes the captures will keep (attention in its layout, hidden states, value norms,
logits, the logit lens, per-step statistics) and the peak while recording (the preallocated
buffers plus the captures assembled from them). It is an upper bound: every sequence is counted
at ``max_new_tokens`` and buffers at the longest prompt. :func:`check_budget` refuses a request
whose peak exceeds the budget, before generation, naming the selective settings that would fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from inspector._capture.selection import format_bytes
from inspector._records.layout import format_ids

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from inspector._capture.settings import GenerationSettings

_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
#: Allowance for a capture file's JSON document (tokens, labels, metadata) per label and in all.
_DOC_BYTES_PER_LABEL = 40
_DOC_BYTES = 6_144


@dataclass(frozen=True)
class ModelSizes:
    """What the estimate needs from a model: layers, heads, residual width, vocabulary."""

    num_layers: int
    num_heads: int
    d_model: int
    vocab_size: int

    @classmethod
    def of(cls, model: Any) -> ModelSizes:
        cfg = model.config
        d = next((getattr(cfg, a) for a in ("hidden_size", "n_embd", "d_model") if getattr(cfg, a, None)), 0)
        return cls(int(cfg.num_hidden_layers), int(cfg.num_attention_heads), int(d), int(cfg.vocab_size))


@dataclass(frozen=True)
class CaptureEstimate:
    """Bytes by part, summed over every returned sequence (``kept``), and the recording peak (``peak``)."""

    attention: int
    hidden_states: int
    value_norms: int
    logits: int
    lens: int
    steps: int
    buffers: int

    @property
    def kept(self) -> int:
        """What the captures hold: their tensors plus an allowance for each file's JSON document."""
        return self.attention + self.hidden_states + self.value_norms + self.logits + self.lens + self.steps

    @property
    def peak(self) -> int:
        """Memory while recording: the preallocated buffers, then the captures assembled from them."""
        return self.buffers + self.kept


def estimate_capture(settings: GenerationSettings, sizes: ModelSizes, prompt_lens: list[int]) -> CaptureEstimate:
    """Upper bound on the bytes of the captures of ``prompt_lens`` prompts (see the module docstring).

    ``settings`` must have its selection resolved (:meth:`GenerationSettings.selected`).
    """
    s = settings
    t = s.max_new_tokens
    nrs = s.num_return_sequences
    rows = len(prompt_lens) * (s.num_beams if s.num_beams > 1 else nrs)
    layout = s.attention_layout
    n_layers = sizes.num_layers if layout.layers is None else len(layout.layers)
    n_heads = layout.head_axis(sizes.num_heads)
    att_b = _DTYPE_BYTES[s.attention_dtype]
    hid_b = _DTYPE_BYTES[s.hidden_dtype]
    k = min(s.top_k_logits, sizes.vocab_size)
    entries = sizes.num_layers + 1
    att = hidden = norms = logits = lens = steps = 0
    for p in prompt_lens:
        seq = p + t
        q = t if layout.rows == "generated" else seq
        if s.keep_attention:
            att += nrs * n_layers * n_heads * q * seq * att_b
        if s.keep_hidden_states:
            hidden += nrs * entries * seq * sizes.d_model * hid_b
        if s.keep_value_norms:
            norms += nrs * sizes.num_layers * sizes.num_heads * seq * 4
        if s.keep_logits:
            logits += nrs * t * sizes.vocab_size * 4
        if s.lens_k:
            lk = min(s.lens_k, sizes.vocab_size)
            lens += nrs * entries * seq * (lk * 12 + 16)
        # token ids, two TokenScores (entropy, logprob, rank, k ids, k logprobs), the JSON document
        steps += nrs * (seq * 8 + 2 * t * (16 + 12 * k) + _DOC_BYTES + _DOC_BYTES_PER_LABEL * (seq + 2 * t * k))
    s_max = max(prompt_lens) + t + 1
    buffers = 0
    if s.keep_attention:
        buffers += rows * n_layers * n_heads * (t if layout.rows == "generated" else s_max) * s_max * att_b
    if s.record_hidden_states:
        buffers += rows * entries * s_max * sizes.d_model * hid_b
    if s.keep_value_norms:
        buffers += rows * sizes.num_layers * sizes.num_heads * s_max * 4
    if s.keep_logits:
        buffers += rows * t * sizes.vocab_size * 4
    return CaptureEstimate(att, hidden, norms, logits, lens, steps, buffers)


class MemoryBudgetError(ValueError):
    """A capture would need more memory than the budget; the message lists the settings that would fit."""


def default_budget(device: torch.device) -> tuple[int | None, str]:
    """Half the free memory of ``device`` and how it was found; ``None`` when it cannot be known.

    CUDA: ``torch.cuda.mem_get_info``; MPS: the recommended maximum minus what is allocated; CPU:
    ``MemAvailable`` of ``/proc/meminfo`` (Linux; elsewhere there is no default budget).
    """
    import torch

    free: int | None = None
    if device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0])
    elif device.type == "mps":
        mps: Any = torch.mps
        free = int(mps.recommended_max_memory()) - int(mps.driver_allocated_memory())
    elif device.type == "cpu":
        free = _mem_available()
    if free is None:
        return None, f"no default budget on {device}"
    return max(free, 0) // 2, f"half the free memory of {device}"


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_budget(settings: GenerationSettings, sizes: ModelSizes, prompt_lens: list[int],
                 device: torch.device) -> CaptureEstimate:
    """The estimate, after a ``MemoryBudgetError`` when its peak exceeds ``settings.memory_budget``."""
    est = estimate_capture(settings, sizes, prompt_lens)
    budget: int | None
    if settings.memory_budget == "off":
        return est
    if isinstance(settings.memory_budget, int):
        budget, where = settings.memory_budget, "--memory-budget"
    else:
        budget, where = default_budget(device)
    if budget is None or est.peak <= budget:
        return est
    fits = [f"{text} ({format_bytes(alt.peak)})" for text, alt in alternatives(settings, sizes, prompt_lens)
            if alt.peak <= budget]
    advice = ("; options that fit: " + ", or ".join(fits)) if fits else (
        "; no selective setting fits: use fewer or shorter prompts, a lower max_new_tokens, or keep_attention=False")
    raise MemoryBudgetError(
        f"this capture needs about {format_bytes(est.peak)} while recording (captures keep "
        f"{format_bytes(est.kept)}), over the budget of {format_bytes(budget)} ({where}){advice}; "
        "or raise memory_budget (CLI: --memory-budget 16GB, or off)")


def alternatives(settings: GenerationSettings, sizes: ModelSizes,
                 prompt_lens: list[int]) -> list[tuple[str, CaptureEstimate]]:
    """Selective variants of ``settings`` with their estimates, each described by its CLI flags."""
    s = settings
    out: list[tuple[str, CaptureEstimate]] = []

    def add(text: str, **changes: Any) -> None:
        alt = replace(s, **changes)
        out.append((text, estimate_capture(alt, sizes, prompt_lens)))

    if s.keep_attention:
        if s.attention_rows == "all":
            add("--attention-rows generated", attention_rows="generated")
        if s.head_reduce == "none" and not s.keep_value_norms:
            add("--head-reduce mean", head_reduce="mean")
            if s.attention_rows == "all":
                add("--attention-rows generated --head-reduce mean", attention_rows="generated", head_reduce="mean")
        if not s.keep_value_norms:
            kept = list(s.layers) if isinstance(s.layers, tuple) else list(range(sizes.num_layers))
            for n in (len(kept) // 2, len(kept) // 4, 1):
                if 0 < n < len(kept):
                    layers = tuple(kept[:n])
                    add(f"--layers {format_ids(layers)}", layers=layers)
    if s.keep_hidden_states:
        add("without --keep-hidden-states", keep_hidden_states=False)
    if s.keep_logits:
        add("without --keep-logits", keep_logits=False)
    if s.keep_attention:
        add("without attention", keep_attention=False)
    return out
