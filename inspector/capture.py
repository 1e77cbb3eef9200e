"""Generation with capture: per-step token scores and per-layer/head attention.

One call to Hugging Face ``generate`` with the KV cache on. Nothing is asked of
``generate`` that it would accumulate (no ``output_attentions``/``output_logits``):
instead, hooks read each step's attention weights and logits as they are
produced and reduce them at once (top-k, entropy, chosen-token rank), so memory
stays flat however long the generation.

* attention weights: forward hooks on every attention module (eager attention
  returns ``(output, weights)``), written into one ``[row, layer, head, seq, seq]``
  buffer (greedy/sampling) or kept per step and gathered through ``beam_indices``
  (beam search);
* raw logits: a forward hook on the model (``outputs.logits[:, -1]``);
* processed scores: a logits processor placed last, which sees what decoding
  picks from;
* the chosen token: a stopping criterion, called right after each selection.

The last generated token's attention row needs one more cached decoding step,
which is taken after ``generate`` returns.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from inspector.model import library_versions
from inspector.records import Capture, CaptureError, CaptureMeta, TokenScores

if TYPE_CHECKING:  # pragma: no cover
    from inspector.model import InspectorModel

_ATT_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
_EOS, _STOP = 1, 2
#: Bounds on stop strings (each one costs memory proportional to the vocabulary times its length).
MAX_STOP_STRINGS = 32
MAX_STOP_STRING_CHARS = 256


#: Processors ``generate`` adds in every decoding mode, switched off explicitly (a ``None`` would be
#: filled from the model's ``generation_config``, then from transformers' defaults).
_FILTERS_OFF: dict[str, Any] = {
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0,
    "min_length": 0,
    "remove_invalid_values": False,
    "renormalize_logits": False,
    "guidance_scale": 1.0,
    "penalty_alpha": 0.0,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "token_healing": False,
}
#: Sampling warpers ``generate`` appends after every custom processor (so after the recorder); ours run
#: as custom processors instead (:meth:`GenerationSettings.warpers`). ``top_k=0`` is off; its default is 50.
_WARPERS_OFF: dict[str, Any] = {
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
}
#: ``generation_config`` fields whose only "off" value is ``None``: a model that sets one is refused.
_NONE_ONLY_FILTERS = (
    "min_new_tokens",  # 0 would still add a processor (min_length becomes the prompt length)
    "min_p",
    "top_h",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "exponential_decay_length_penalty",
    "sequence_bias",
    "constraints",
    "force_words_ids",
    "watermarking_config",
    "max_time",
    "stop_strings",
    "dola_layers",
    "prompt_lookup_num_tokens",
    "assistant_early_exit",
)


def _refuse_implicit_filters(model: nn.Module) -> None:
    """``ValueError`` when the model's own ``generation_config`` sets a filter the settings cannot switch off."""
    own = getattr(model, "generation_config", None)
    if own is None:
        return
    found = {name: getattr(own, name, None) for name in _NONE_ONLY_FILTERS}
    found = {name: value for name, value in found.items() if value is not None}
    if found:
        listed = ", ".join(f"{name}={value!r}" for name, value in found.items())
        raise ValueError(
            f"the model's generation_config sets {listed}, which would change decoding outside inspector's "
            f"settings (and unseen by the capture); set it to None first, e.g. "
            f"im.model.generation_config.{next(iter(found))} = None"
        )


class NonFiniteError(CaptureError):
    """The model produced NaN or inf; the message names the step and layer."""


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class GenerationSettings:
    """Every setting of one capture, validated before any model work.

    ``top_k=None`` and ``top_p=1.0`` switch those filters off; ``temperature``,
    ``top_k`` and ``top_p`` apply to sampling only. ``top_k_logits`` is how many
    candidates are kept per step (not a decoding setting).
    """

    max_new_tokens: int = 40
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    num_beams: int = 1
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None
    top_k_logits: int = 10
    keep_logits: bool = False
    keep_attention: bool = True
    attention_dtype: str = "float16"
    truncate_prompt: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop_strings, str):
            object.__setattr__(self, "stop_strings", (self.stop_strings,))
        else:
            object.__setattr__(self, "stop_strings", tuple(self.stop_strings or ()))
        if isinstance(self.attention_dtype, torch.dtype):
            object.__setattr__(self, "attention_dtype", str(self.attention_dtype).replace("torch.", ""))
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ValueError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if not isinstance(self.num_return_sequences, int) or self.num_return_sequences < 1:
            raise ValueError(f"num_return_sequences must be an integer >= 1, got {self.num_return_sequences!r}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams})"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError("greedy decoding returns one sequence; set num_return_sequences=1, do_sample or num_beams")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("beam sampling is not supported; use num_beams>1 without do_sample, or do_sample alone")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.do_sample and self.temperature == 0:
            raise ValueError("temperature 0 means greedy decoding; set do_sample=False or a temperature > 0")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be a non-negative integer or None, got {self.top_k!r}")
        if not isinstance(self.repetition_penalty, (int, float)) or self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        if not isinstance(self.top_k_logits, int) or self.top_k_logits < 1:
            raise ValueError(f"top_k_logits must be an integer >= 1, got {self.top_k_logits!r}")
        if self.attention_dtype not in _ATT_DTYPES:
            raise ValueError(f"attention_dtype must be one of {sorted(_ATT_DTYPES)}, got {self.attention_dtype!r}")
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {list(self.stop_strings)!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")

    def prompt_token_budget(self, context_length: int) -> int:
        """Prompt tokens that fit a ``context_length``-token context with room for ``max_new_tokens``.

        Raises ``ValueError`` when ``max_new_tokens`` leaves no room at all.
        """
        budget = int(context_length) - self.max_new_tokens
        if budget < 1:
            raise ValueError(
                f"max_new_tokens={self.max_new_tokens} leaves no room for a prompt in the model's "
                f"{context_length}-token context; lower max_new_tokens"
            )
        return budget

    @property
    def mode(self) -> str:
        return "beam" if self.num_beams > 1 else ("sample" if self.do_sample else "greedy")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop_strings"] = list(self.stop_strings)
        out["mode"] = self.mode
        return out

    def generation_config(self, model: nn.Module, tokenizer: Any) -> Any:
        """The ``GenerationConfig`` for ``generate``: every decoding filter comes from these settings alone.

        ``generate`` fills each field left ``None`` from the model's own ``generation_config`` and
        then from transformers' defaults (``top_k=50`` among them), and would apply those filters
        after the recorder, unseen. So every field that can switch a processor or warper off is
        set to its "off" value here (the sampling warpers run as custom processors, see
        :meth:`warpers`), and a model ``generation_config`` setting one of the filters whose only
        "off" value is ``None`` is refused with a ``ValueError`` naming it.
        """
        from transformers import GenerationConfig

        _refuse_implicit_filters(model)
        eos = model.config.eos_token_id if model.config.eos_token_id is not None else tokenizer.eos_token_id
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": self.num_beams,
            "num_return_sequences": self.num_return_sequences,
            "eos_token_id": eos,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": getattr(model.config, "bos_token_id", None),
            "use_cache": True,
            "return_dict_in_generate": True,
            "repetition_penalty": float(self.repetition_penalty),
            **_FILTERS_OFF,
        }
        if self.do_sample:
            kwargs.update(_WARPERS_OFF)
        if self.num_beams > 1:
            kwargs.update(early_stopping=True, length_penalty=1.0)
        return GenerationConfig(**kwargs)

    def warpers(self) -> list[Any]:
        """Hugging Face's own sampling warpers, in ``generate``'s order (temperature, top-k, top-p).

        They are passed as custom processors, so the recorder placed after them sees
        the scores that sampling actually draws from (``generate`` would otherwise
        apply them after every custom processor).
        """
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        if not self.do_sample:
            return []
        out: list[Any] = []
        if self.temperature != 1.0:
            out.append(TemperatureLogitsWarper(float(self.temperature)))
        if self.top_k:
            out.append(TopKLogitsWarper(top_k=self.top_k, min_tokens_to_keep=1))
        if self.top_p < 1.0:
            out.append(TopPLogitsWarper(top_p=float(self.top_p), min_tokens_to_keep=1))
        return out


# --------------------------------------------------------------------------- modules
def find_attention_modules(model: nn.Module) -> list[tuple[nn.Module, int]]:
    """``[(module, output_index)]`` for every self-attention module, in layer order.

    Uses the model's own ``_can_record_outputs["attentions"]`` declaration (what
    ``output_attentions`` uses in transformers 5), else modules named ``attn`` or
    ``self_attn`` whose class name ends with ``Attention``.
    """
    spec = (getattr(model, "_can_record_outputs", None) or {}).get("attentions")
    found: list[tuple[nn.Module, int]] = []
    if spec is not None:
        target = getattr(spec, "target_class", spec)
        index = int(getattr(spec, "index", 1))
        layer_name = getattr(spec, "layer_name", None)
        if isinstance(target, type):
            for name, module in model.named_modules():
                if isinstance(module, target) and (layer_name is None or name.endswith(layer_name)):
                    found.append((module, index))
    if not found:
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in ("attn", "self_attn") and type(module).__name__.endswith("Attention"):
                found.append((module, 1))
    expected = getattr(model.config, "num_hidden_layers", None)
    if not found or (expected is not None and len(found) != expected):
        raise ValueError(
            f"could not find the {expected} self-attention modules of {type(model).__name__} "
            f"(found {len(found)}); this model type is not supported for attention capture"
        )
    return found


def _cache_kwarg(model: nn.Module) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


# --------------------------------------------------------------------------- prompts
@dataclass
class _Batch:
    prompts: list[str]
    ids: list[list[int]]
    input_ids: torch.Tensor  # [batch, p_max], left-padded
    attention_mask: torch.Tensor  # [batch, p_max]
    pads: list[int]
    truncated: list[int]

    @property
    def p_max(self) -> int:
        return int(self.input_ids.shape[1])


def encode_prompts(im: InspectorModel, prompts: Sequence[str], settings: GenerationSettings) -> _Batch:
    """Tokenize and left-pad; checks emptiness and the context length (``ValueError``)."""
    tok = im.tokenizer
    ctx = im.context_length
    budget = ctx - settings.max_new_tokens
    if budget < 1:
        raise ValueError(
            f"max_new_tokens={settings.max_new_tokens} leaves no room for a prompt in the model's "
            f"{ctx}-token context; lower max_new_tokens"
        )
    ids_list: list[list[int]] = []
    truncated: list[int] = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt {i} is empty; give some text to continue")
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"prompt {i} encodes to no tokens; give some text to continue")
        cut = 0
        if len(ids) > budget:
            if not settings.truncate_prompt:
                raise ValueError(
                    f"prompt {i} has {len(ids)} tokens; with max_new_tokens={settings.max_new_tokens} it needs "
                    f"{len(ids) + settings.max_new_tokens} positions but the model's context is {ctx}. Shorten the "
                    f"prompt, lower max_new_tokens, or pass truncate_prompt=True to drop tokens from the left"
                )
            cut = len(ids) - budget
            ids = ids[cut:]
        ids_list.append(ids)
        truncated.append(cut)
    p_max = max(len(x) for x in ids_list)
    pad_id = tok.pad_token_id
    input_ids = torch.full((len(ids_list), p_max), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids_list), p_max), dtype=torch.long)
    pads = []
    for row, ids in enumerate(ids_list):
        pad = p_max - len(ids)
        input_ids[row, pad:] = torch.tensor(ids, dtype=torch.long)
        mask[row, pad:] = 1
        pads.append(pad)
    return _Batch(list(prompts), ids_list, input_ids, mask, pads, truncated)


@dataclass(frozen=True)
class PromptBudget:
    """How a prompt fits the model's context under some settings (before generating).

    Attributes:
        prompt_tokens: tokens of the prompt as given.
        max_new_tokens: new tokens asked for.
        context_length: the model's context.
        truncate: whether prompt tokens would be dropped from the left to fit.
    """

    prompt_tokens: int
    max_new_tokens: int
    context_length: int
    truncate: bool

    @property
    def fits(self) -> bool:
        return self.prompt_tokens + self.max_new_tokens <= self.context_length

    @property
    def dropped_tokens(self) -> int:
        """Prompt tokens that would be dropped from the left (0 when it fits or truncation is off)."""
        if self.fits or not self.truncate:
            return 0
        return self.prompt_tokens + self.max_new_tokens - self.context_length


def prompt_budget(im: InspectorModel, prompt: str, settings: GenerationSettings) -> PromptBudget:
    """Count ``prompt``'s tokens against the context left by ``settings.max_new_tokens`` (no model work)."""
    n = len(im.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])
    return PromptBudget(n, settings.max_new_tokens, im.context_length, settings.truncate_prompt)


# --------------------------------------------------------------------------- recording
def _stats(logp: torch.Tensor, k: int, masked: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entropy ``[row]`` and top-k ``[row, k]`` of log-probabilities ``[row, vocab]``.

    ``masked``: some entries may be ``-inf`` (filtered by top-k/top-p); their
    ``0 * -inf`` terms are taken as 0. Otherwise the entropy is one batched dot
    product ``-p . log p`` per row, the cheapest exact form.
    """
    p = logp.exp()
    if masked:
        ent = -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)
    else:
        ent = -torch.bmm(p[:, None, :], logp[:, :, None])[:, 0, 0]
    topv, topi = logp.topk(k, dim=-1)
    return ent, topv, topi


def _chosen(logp: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability ``[n]`` and 1-based rank ``[n]`` of ``ids`` ``[n]`` (or ``[n, c]``)."""
    squeeze = ids.dim() == 1
    ids2 = ids[:, None] if squeeze else ids
    lp = logp.gather(-1, ids2)
    rank = (logp[:, None, :] > lp[:, :, None]).sum(-1) + 1
    return (lp[:, 0], rank[:, 0]) if squeeze else (lp, rank)


@dataclass
class _StepLog:
    raw_entropy: list[torch.Tensor] = field(default_factory=list)
    raw_topv: list[torch.Tensor] = field(default_factory=list)
    raw_topi: list[torch.Tensor] = field(default_factory=list)
    proc_entropy: list[torch.Tensor] = field(default_factory=list)
    proc_topv: list[torch.Tensor] = field(default_factory=list)
    proc_topi: list[torch.Tensor] = field(default_factory=list)
    # greedy/sample: chosen-token stats per step, [row]
    raw_chosen_lp: list[torch.Tensor] = field(default_factory=list)
    raw_chosen_rank: list[torch.Tensor] = field(default_factory=list)
    proc_chosen_lp: list[torch.Tensor] = field(default_factory=list)
    proc_chosen_rank: list[torch.Tensor] = field(default_factory=list)
    # beam: candidate stats per step, [row, c]
    cand_ids: list[torch.Tensor] = field(default_factory=list)
    cand_raw: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    cand_proc: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    finite: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)


class _Recorder:
    """Hooks, logits processor and stopping criterion that record one ``generate`` call."""

    def __init__(self, im: InspectorModel, settings: GenerationSettings, rows: int, p_max: int, stopper: Any):
        self.im = im
        self.s = settings
        self.rows = rows
        self.p_max = p_max
        self.k = min(settings.top_k_logits, int(im.model.config.vocab_size))
        self.att_dtype = _ATT_DTYPES[settings.attention_dtype]
        self.modules = find_attention_modules(im.model)
        self.num_layers = len(self.modules)
        self.num_heads = im.num_heads
        self.device = im.device
        self.s_max = p_max + settings.max_new_tokens + 1
        self.log = _StepLog()
        self.forward_calls = 0
        self.record_logits = True
        self.raw: torch.Tensor | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._layer_w: list[torch.Tensor | None] = [None] * self.num_layers
        self.stop_criteria = stopper
        self.on_step: Callable[[int, int], None] | None = None
        self.steps_done = 0
        eos = im.model.config.eos_token_id if im.model.config.eos_token_id is not None else im.tokenizer.eos_token_id
        eos_list = eos if isinstance(eos, list) else [eos]
        self.eos_ids = torch.tensor([e for e in eos_list if e is not None], dtype=torch.long, device=self.device)
        self.finish_step = torch.full((rows,), -1, dtype=torch.long, device=self.device)
        self.finish_reason = torch.zeros((rows,), dtype=torch.long, device=self.device)
        self.beam = settings.num_beams > 1
        self.unprocessed = not settings.do_sample and settings.repetition_penalty == 1.0 and not self.beam
        self.cand_k = min(int(im.model.config.vocab_size), 2 * settings.num_beams * max(1, len(eos_list)) + 2)
        self.buffer: torch.Tensor | None = None
        self.prefill: torch.Tensor | None = None  # beam: [row, layer, head, p, p]
        self.rows_by_step: list[torch.Tensor] = []  # beam: [row, layer, head, key] per decode forward
        if settings.keep_attention and not self.beam:
            self.buffer = torch.zeros(
                (rows, self.num_layers, self.num_heads, self.s_max, self.s_max), dtype=self.att_dtype, device=self.device
            )

    # -- hooks --------------------------------------------------------------------------
    def _attention_hook(self, layer: int, index: int):  # noqa: ANN202
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            weights = output[index] if isinstance(output, (tuple, list)) else None
            if weights is None:
                raise RuntimeError(
                    "attention module returned no weights; the model must use eager attention "
                    "(attn_implementation='eager')"
                )
            if not self.s.keep_attention:
                return
            if self.buffer is not None:
                q, kk = int(weights.shape[-2]), int(weights.shape[-1])
                self.buffer[:, layer, :, kk - q : kk, :kk].copy_(weights)
            else:
                self._layer_w[layer] = weights.to(self.att_dtype)

        return hook

    def _model_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        first = self.forward_calls == 0
        self.forward_calls += 1
        if self.beam and self.s.keep_attention:
            ws = self._layer_w
            if first:
                self.prefill = torch.stack(ws, dim=1)  # type: ignore[arg-type]
            else:
                self.rows_by_step.append(torch.stack([w[:, :, -1, :] for w in ws], dim=1))  # type: ignore[index]
            self._layer_w = [None] * self.num_layers
        if self.record_logits:
            self.raw = output.logits[:, -1, :]

    @contextlib.contextmanager
    def attached(self) -> Iterator[_Recorder]:
        handles = [m.register_forward_hook(self._attention_hook(i, idx)) for i, (m, idx) in enumerate(self.modules)]
        handles.append(self.im.model.register_forward_hook(self._model_hook, with_kwargs=True))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    # -- per step ---------------------------------------------------------------------
    def process(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Called by ``generate`` with the final processed scores; returns them unchanged."""
        if self.raw is None:  # pragma: no cover - defensive
            raise RuntimeError("logits processor called before the model's forward hook")
        raw = self.raw.float()
        self.raw = None
        log = self.log
        if self.s.keep_logits:
            log.logits.append(raw.clone())
        raw_lp = torch.log_softmax(raw, dim=-1)
        ent, topv, topi = _stats(raw_lp, self.k)
        # -p.log p is finite exactly when every raw logit is (NaN, +inf or -inf all make it NaN)
        log.finite.append(torch.isfinite(ent))
        log.raw_entropy.append(ent)
        log.raw_topv.append(topv)
        log.raw_topi.append(topi)
        if self.beam:  # scores are already log-probabilities, processed
            proc_lp = torch.log_softmax(scores.float(), dim=-1)
        elif self.unprocessed:
            # nothing processes greedy scores here (no processor is configured); checked once
            if len(log.raw_entropy) == 1 and not torch.allclose(scores, raw, rtol=0, atol=0, equal_nan=True):
                raise CaptureError("generate processed greedy scores unexpectedly; please report this")
            proc_lp = raw_lp
        else:
            proc_lp = torch.log_softmax(scores.float(), dim=-1)
        if proc_lp is raw_lp:
            log.proc_entropy.append(ent)
            log.proc_topv.append(topv)
            log.proc_topi.append(topi)
        else:
            pe, pv, pi = _stats(proc_lp, self.k, masked=True)
            log.proc_entropy.append(pe)
            log.proc_topv.append(pv)
            log.proc_topi.append(pi)
        if self.beam:
            cand = proc_lp.topk(self.cand_k, dim=-1).indices
            log.cand_ids.append(cand)
            log.cand_raw.append(_chosen(raw_lp, cand))
            log.cand_proc.append(_chosen(proc_lp, cand))
        else:
            self._pending = (raw_lp, proc_lp)
        return scores

    def stop(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        """Called by ``generate`` right after each token selection."""
        last = input_ids[:, -1]
        eos_hit = torch.isin(last, self.eos_ids)
        stop_hit = (
            self.stop_criteria(input_ids, scores)
            if self.stop_criteria is not None
            else torch.zeros_like(eos_hit)
        )
        if not self.beam and self._pending is not None:
            raw_lp, proc_lp = self._pending
            self._pending = None
            if proc_lp is raw_lp:  # greedy on raw scores: the chosen token is the argmax, rank 1 by definition
                lp, rank = raw_lp.gather(-1, last[:, None])[:, 0], torch.ones_like(last)
            else:
                lp, rank = _chosen(raw_lp, last)
            self.log.raw_chosen_lp.append(lp)
            self.log.raw_chosen_rank.append(rank)
            if proc_lp is raw_lp:
                self.log.proc_chosen_lp.append(lp)
                self.log.proc_chosen_rank.append(rank)
            else:
                plp, prank = _chosen(proc_lp, last)
                self.log.proc_chosen_lp.append(plp)
                self.log.proc_chosen_rank.append(prank)
            step = len(self.log.raw_chosen_lp) - 1
            new = (self.finish_step < 0) & (eos_hit | stop_hit)
            self.finish_step = torch.where(new, torch.full_like(self.finish_step, step), self.finish_step)
            reason = torch.where(eos_hit, torch.full_like(last, _EOS), torch.full_like(last, _STOP))
            self.finish_reason = torch.where(new, reason, self.finish_reason)
        self.steps_done += 1
        if self.on_step is not None:
            self.on_step(self.steps_done, self.s.max_new_tokens)
        return eos_hit | stop_hit


def _processor_and_criterion(rec: _Recorder) -> tuple[Any, Any]:
    from transformers import LogitsProcessor, StoppingCriteria

    class _Process(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            return rec.process(input_ids, scores)

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            return rec.stop(input_ids, scores, **kwargs)

    return _Process(), _Stop()


# --------------------------------------------------------------------------- assembly
def _token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    return [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]


def _check_finite_attention(att: torch.Tensor, prompt_len: int, which: str) -> None:
    bad = ~torch.isfinite(att)
    if bool(bad.any()):
        layer = int(bad.flatten(1).any(-1).nonzero()[0])
        q = int(bad[layer].any(0).any(-1).nonzero()[0])
        where = "the prefill (prompt rows)" if q < prompt_len else f"the row of generated token {q - prompt_len}"
        raise NonFiniteError(f"{which}: NaN or inf attention weights at layer {layer}, query position {q} ({where})")


def _check_finite_steps(finite: torch.Tensor, which: str) -> None:
    if not bool(finite.all()):
        step = int((~finite).nonzero()[0])
        raise NonFiniteError(
            f"{which}: NaN or inf logits at generated step {step} (final layer output); on MPS try float32 "
            "and compare with `inspector doctor`"
        )


def generate(
    im: InspectorModel,
    prompts: str | Sequence[str],
    *,
    max_new_tokens: int = 40,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    num_beams: int = 1,
    num_return_sequences: int = 1,
    repetition_penalty: float = 1.0,
    stop_strings: Sequence[str] | str | None = None,
    seed: int | None = None,
    top_k_logits: int = 10,
    keep_logits: bool = False,
    keep_attention: bool = True,
    attention_dtype: torch.dtype | str = torch.float16,
    truncate_prompt: bool = False,
    sources: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
    settings: GenerationSettings | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Capture | list[Capture]:
    """Generate from one prompt or a batch and capture every step.

    Args:
        im: a model from :func:`inspector.load_model`.
        prompts: a string, or a list of strings generated together in one left-padded batch.
        max_new_tokens, do_sample, temperature, top_k, top_p, num_beams, num_return_sequences,
            repetition_penalty, stop_strings: decoding settings, as in Hugging Face ``generate``
            (``top_k=None`` and ``top_p=1.0`` are off).
        seed: seed for sampling (the global RNG is restored afterwards).
        top_k_logits: candidates kept per step.
        keep_logits: also keep full raw logits ``[step, vocab]``.
        keep_attention: keep ``[layer, head, query, key]`` attention (default).
        attention_dtype: ``torch.float16`` (default), ``torch.float32`` or ``torch.bfloat16``.
        truncate_prompt: drop prompt tokens from the left to fit the context instead of raising.
        sources: where each prompt came from (stored in ``capture.meta.source``).
        settings: a ready :class:`GenerationSettings` (overrides the keyword arguments).
        on_step: called after every decoding step as ``on_step(steps_done, max_new_tokens)``
            (for a progress bar). To cancel, raise from it: the exception propagates out of
            ``generate``, the model's hooks are removed and nothing is returned.

    Returns:
        A :class:`Capture` for a single string with one returned sequence; otherwise a list,
        prompt-major (all sequences of prompt 0, then prompt 1, ...).

    Raises:
        ValueError: bad settings or prompts, before any model work.
        NonFiniteError: the model produced NaN/inf (names step and layer).
    """
    if settings is None:
        settings = GenerationSettings(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            num_beams=num_beams,
            num_return_sequences=num_return_sequences,
            repetition_penalty=repetition_penalty,
            stop_strings=tuple([stop_strings] if isinstance(stop_strings, str) else (stop_strings or ())),
            seed=seed,
            top_k_logits=top_k_logits,
            keep_logits=keep_logits,
            keep_attention=keep_attention,
            attention_dtype=attention_dtype,  # type: ignore[arg-type]
            truncate_prompt=truncate_prompt,
        )
    single = isinstance(prompts, str)
    prompt_list = [prompts] if single else list(prompts)
    if not prompt_list:
        raise ValueError("no prompts given; pass a string or a non-empty list of strings")
    if isinstance(sources, dict) or sources is None:
        source_list = [dict(sources or {"kind": "text"}) for _ in prompt_list]
    else:
        source_list = [dict(s) for s in sources]
        if len(source_list) != len(prompt_list):
            raise ValueError(f"got {len(source_list)} sources for {len(prompt_list)} prompts")
    batch = encode_prompts(im, prompt_list, settings)
    captures = _run(im, batch, settings, source_list, on_step)
    if single and settings.num_return_sequences == 1:
        return captures[0]
    return captures


@torch.no_grad()
def _run(
    im: InspectorModel,
    batch: _Batch,
    settings: GenerationSettings,
    sources: list[dict[str, Any]],
    on_step: Callable[[int, int], None] | None = None,
) -> list[Capture]:
    from transformers import StoppingCriteriaList, LogitsProcessorList
    from transformers.generation.stopping_criteria import StopStringCriteria

    model, tok = im.model, im.tokenizer
    dev = im.device
    n_prompts = len(batch.prompts)
    expand = settings.num_beams if settings.num_beams > 1 else settings.num_return_sequences
    rows = n_prompts * expand
    stopper = StopStringCriteria(tok, list(settings.stop_strings)) if settings.stop_strings else None
    rec = _Recorder(im, settings, rows, batch.p_max, stopper)
    rec.on_step = on_step
    processor, criterion = _processor_and_criterion(rec)
    gen_config = settings.generation_config(model, tok)
    input_ids = batch.input_ids.to(dev)
    mask = batch.attention_mask.to(dev)
    rng = torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []) if settings.seed is not None else contextlib.nullcontext()
    with rng, rec.attached():
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            generation_config=gen_config,
            logits_processor=LogitsProcessorList([*settings.warpers(), processor]),
            stopping_criteria=StoppingCriteriaList([criterion]),
        )
        sequences = out.sequences  # [rows_out, p_max + T]
        total_steps = int(sequences.shape[1]) - batch.p_max
        if not settings.num_beams > 1 and settings.keep_attention and rec.forward_calls < total_steps + 1:
            _final_cached_step(rec, out, sequences, mask, expand)
    beam_indices = getattr(out, "beam_indices", None) if settings.num_beams > 1 else None
    return _assemble(im, batch, settings, sources, rec, sequences, beam_indices, stopper)


def _final_cached_step(rec: _Recorder, out: Any, sequences: torch.Tensor, mask: torch.Tensor, expand: int) -> None:
    """One more cached decoding step over the last generated token, for its attention row."""
    model = rec.im.model
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    full_mask = mask.repeat_interleave(expand, dim=0) if expand > 1 else mask
    steps = int(sequences.shape[1]) - int(mask.shape[1])
    full_mask = torch.cat([full_mask, full_mask.new_ones((full_mask.shape[0], steps))], dim=1)
    position_ids = (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -1:]
    rec.record_logits = False
    kwargs = {_cache_kwarg(model): cache}
    model(
        input_ids=sequences[:, -1:],
        attention_mask=full_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=1,
        **kwargs,
    )


def _stack(parts: list[torch.Tensor], steps: int) -> torch.Tensor:
    return torch.stack(parts[:steps], dim=1).cpu() if steps else torch.empty(0)


def _assemble(
    im: InspectorModel,
    batch: _Batch,
    settings: GenerationSettings,
    sources: list[dict[str, Any]],
    rec: _Recorder,
    sequences: torch.Tensor,
    beam_indices: torch.Tensor | None,
    stopper: Any,
) -> list[Capture]:
    tok = im.tokenizer
    p_max = batch.p_max
    total = int(sequences.shape[1]) - p_max
    log = rec.log
    rows_out = int(sequences.shape[0])
    nrs = settings.num_return_sequences
    seq_cpu = sequences.cpu()
    finite = torch.stack(log.finite[:total], dim=1).cpu()  # [row, step]
    raw_ent = torch.stack(log.raw_entropy[:total], dim=1).cpu()
    raw_topv = torch.stack(log.raw_topv[:total], dim=1).cpu()
    raw_topi = torch.stack(log.raw_topi[:total], dim=1).cpu()
    proc_ent = torch.stack(log.proc_entropy[:total], dim=1).cpu()
    proc_topv = torch.stack(log.proc_topv[:total], dim=1).cpu()
    proc_topi = torch.stack(log.proc_topi[:total], dim=1).cpu()
    logits_all = torch.stack(log.logits[:total], dim=1).cpu() if settings.keep_logits else None
    beam = beam_indices is not None
    if beam:
        bi = beam_indices.cpu().long()  # [rows_out, steps], -1 = unfilled
        cand = torch.stack(log.cand_ids[:total], dim=1).cpu()  # [row, step, c]
        c_rlp = torch.stack([c[0] for c in log.cand_raw[:total]], dim=1).cpu()
        c_rrk = torch.stack([c[1] for c in log.cand_raw[:total]], dim=1).cpu()
        c_plp = torch.stack([c[0] for c in log.cand_proc[:total]], dim=1).cpu()
        c_prk = torch.stack([c[1] for c in log.cand_proc[:total]], dim=1).cpu()
    else:
        ch_rlp = torch.stack(log.raw_chosen_lp[:total], dim=1).cpu()
        ch_rrk = torch.stack(log.raw_chosen_rank[:total], dim=1).cpu()
        ch_plp = torch.stack(log.proc_chosen_lp[:total], dim=1).cpu()
        ch_prk = torch.stack(log.proc_chosen_rank[:total], dim=1).cpu()
        fin_step = rec.finish_step.cpu()
        fin_reason = rec.finish_reason.cpu()

    versions = library_versions()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    gen_dict = settings.to_dict()
    captures: list[Capture] = []
    final_rows: list[torch.Tensor] = []
    if beam and settings.keep_attention:
        final_rows = _beam_final_rows(im, rec, seq_cpu, bi, batch)
    for j in range(rows_out):
        b = j // nrs
        pad = batch.pads[b]
        if beam:
            steps_j = int((bi[j] >= 0).sum())
            row_at = bi[j, :steps_j]  # row of the running batch that produced token i
        else:
            fin = int(fin_step[j])
            steps_j = fin + 1 if 0 <= fin < total else total
            row_at = torch.full((steps_j,), j, dtype=torch.long)
        gen_ids = seq_cpu[j, p_max : p_max + steps_j]
        ids = torch.cat([batch.input_ids[b, pad:], gen_ids])
        plen = p_max - pad
        which = f"prompt {b}" + (f", sequence {j % nrs}" if nrs > 1 else "")
        steps_idx = torch.arange(steps_j)
        if beam:
            pos = (cand[row_at, steps_idx] == gen_ids[:, None]).int().argmax(-1)
            found = cand[row_at, steps_idx, pos] == gen_ids
            if not bool(found.all()):  # pragma: no cover - would be a transformers change
                raise CaptureError(f"{which}: a beam token was not among the recorded candidates")
            raw_scores = TokenScores(raw_ent[row_at, steps_idx], c_rlp[row_at, steps_idx, pos],
                                     c_rrk[row_at, steps_idx, pos], raw_topi[row_at, steps_idx],
                                     raw_topv[row_at, steps_idx])
            proc_scores = TokenScores(proc_ent[row_at, steps_idx], c_plp[row_at, steps_idx, pos],
                                      c_prk[row_at, steps_idx, pos], proc_topi[row_at, steps_idx],
                                      proc_topv[row_at, steps_idx])
            last = int(gen_ids[-1]) if steps_j else -1
            if last in rec.eos_ids.tolist():
                reason = "eos"
            elif stopper is not None and bool(stopper(seq_cpu[j : j + 1, : p_max + steps_j].to(rec.device), ())[0]):
                reason = "stop_string"
            else:
                reason = "length"
        else:
            raw_scores = TokenScores(raw_ent[j, :steps_j], ch_rlp[j, :steps_j], ch_rrk[j, :steps_j],
                                     raw_topi[j, :steps_j], raw_topv[j, :steps_j])
            proc_scores = TokenScores(proc_ent[j, :steps_j], ch_plp[j, :steps_j], ch_prk[j, :steps_j],
                                      proc_topi[j, :steps_j], proc_topv[j, :steps_j])
            code = int(fin_reason[j]) if 0 <= fin < total else 0
            reason = {0: "length", _EOS: "eos", _STOP: "stop_string"}[code]
        seq_len = plen + steps_j
        att = None
        if settings.keep_attention:
            if beam:
                att = _beam_attention(rec, j, b, pad, plen, steps_j, row_at, final_rows[j])
            else:
                assert rec.buffer is not None
                att = rec.buffer[j, :, :, pad : pad + seq_len, pad : pad + seq_len].cpu().clone()
            _check_finite_attention(att, plen, which)
        _check_finite_steps(finite[row_at, steps_idx], which)
        logits = logits_all[row_at, steps_idx] if logits_all is not None else None
        id_list = ids.tolist()
        labels_ids = set(id_list) | set(raw_scores.topk_ids.flatten().tolist()) | set(proc_scores.topk_ids.flatten().tolist())
        labels = dict(zip(sorted(labels_ids), _token_strings(tok, sorted(labels_ids))))
        meta = CaptureMeta(
            model=im.name,
            revision=im.revision,
            random_weights=im.random_weights,
            tokenizer=str(getattr(tok, "name_or_path", "")),
            generation={**gen_dict, "prompt_truncated_tokens": batch.truncated[b]},
            device=str(im.device),
            dtype=str(im.dtype).replace("torch.", ""),
            attention_dtype=settings.attention_dtype,
            versions=versions,
            source=sources[b],
            sequence_index=j % nrs,
            created=created,
        )
        captures.append(
            Capture(
                token_ids=ids,
                tokens=[labels[i] for i in id_list],
                prompt_len=plen,
                prompt_text=batch.prompts[b],
                generated_text=tok.decode(gen_ids.tolist(), skip_special_tokens=True),
                stop_reason=reason,
                raw=raw_scores,
                processed=proc_scores,
                attentions=att,
                logits=logits,
                meta=meta,
                labels=labels,
            )
        )
    return captures


def _beam_attention(
    rec: _Recorder, j: int, b: int, pad: int, plen: int, steps: int, row_at: torch.Tensor, final_row: torch.Tensor
) -> torch.Tensor:
    """Dense ``[layer, head, seq, seq]`` for returned beam ``j``, gathered through ``beam_indices``."""
    assert rec.prefill is not None
    seq = plen + steps
    p_max = rec.p_max
    att = torch.zeros((rec.num_layers, rec.num_heads, seq, seq), dtype=rec.att_dtype)
    att[:, :, :plen, :plen] = rec.prefill[int(row_at[0]) if steps else b * rec.s.num_beams, :, :, pad:, pad:].cpu()
    for i in range(steps - 1):  # token i's row comes from forward i+1, on the row that produced token i+1
        r = int(row_at[i + 1])
        att[:, :, plen + i, : plen + i + 1] = rec.rows_by_step[i][r, :, :, pad : p_max + i + 1].cpu()
    if steps:
        att[:, :, seq - 1, :] = final_row
    return att


def _beam_final_rows(
    im: InspectorModel, rec: _Recorder, seq_cpu: torch.Tensor, bi: torch.Tensor, batch: _Batch
) -> list[torch.Tensor]:
    """Attention row ``[layer, head, key]`` of each returned beam's last token (one forward per beam)."""
    out = []
    nrs = rec.s.num_return_sequences
    for j in range(int(seq_cpu.shape[0])):
        b = j // nrs
        pad = batch.pads[b]
        steps = int((bi[j] >= 0).sum())
        ids = seq_cpu[j, pad : batch.p_max + steps][None].to(im.device)
        res = im.model(input_ids=ids, output_attentions=True, use_cache=False, logits_to_keep=1)
        out.append(torch.stack([a[0, :, -1, :] for a in res.attentions]).to(rec.att_dtype).cpu())
    return out
