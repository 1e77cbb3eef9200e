"""Generation with capture: one cached ``generate`` call, recorded, plus one extra cached step.

Nothing is asked of ``generate`` that it would accumulate (no ``output_attentions`` or
``output_logits``): the :class:`~inspector.capture.recorder.Recorder` reads each step's
attention weights and logits as they are produced and reduces them at once. The last
generated token's attention row needs one more cached decoding step, taken after
``generate`` returns. The per-step statistics are then stacked
(:class:`~inspector.capture.steps.StackedSteps`) and assembled into captures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from inspector._compat import generated_cache, output_layer_input, stop_string_criteria
from inspector.capture.assemble import assemble
from inspector.capture.budget import ModelSizes, check_budget, estimate_capture
from inspector.capture.encode import PromptBatch, check_prompts, encode_prompts
from inspector.capture.greedy_stats import group_steps
from inspector.capture.modules import cache_kwarg
from inspector.capture.prompt_cache import PromptCache
from inspector.capture.recorder import Recorder
from inspector.capture.reserved_cache import reserved_cache
from inspector.capture.settings import GenerationSettings
from inspector.capture.steps import StackedSteps

if TYPE_CHECKING:  # pragma: no cover
    from inspector.handle import ModelHandle
    from inspector.records import Capture


def generate(
    im: ModelHandle,
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
    keep_hidden_states: bool = False,
    keep_value_norms: bool = False,
    hidden_dtype: torch.dtype | str = torch.float16,
    lens_k: int = 0,
    layers: Sequence[int] | slice | str | None = None,
    heads: Sequence[int] | slice | str | None = None,
    attention_rows: str = "all",
    head_reduce: str = "none",
    memory_budget: int | str | None = None,
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
            (``top_k=None`` or 0 and ``top_p=1.0`` are off); no other decoding filter is applied.
        seed: seed for sampling (the global RNG is restored afterwards).
        top_k_logits: candidates kept per step.
        keep_logits: also keep full raw logits ``[step, vocab]``.
        keep_attention: keep ``[layer, head, query, key]`` attention (default).
        attention_dtype: ``torch.float16`` (default), ``torch.float32`` or ``torch.bfloat16``.
        truncate_prompt: drop prompt tokens from the left to fit the context instead of raising.
        keep_hidden_states: keep the residual stream ``[layer + 1, seq, d_model]`` of every position
            (``capture.hidden_states``), recorded like attention: prefill, then each decoding step.
        keep_value_norms: keep value-vector norms ``[layer, head, key]`` (``capture.value_norms``), for
            norm-weighted attention.
        hidden_dtype: dtype the hidden states are stored in (default ``torch.float16``).
        lens_k: > 0 computes the logit lens of the hidden states at capture time and stores its top
            ``lens_k`` (``capture.lens``), so a saved capture shows it without the model.
        layers, heads: keep attention for these layer / head ids only (a list, a slice, or text like
            ``"0,3,5-7"``; default all), checked against the model before any work.
        attention_rows: ``"all"`` (default) or ``"generated"``: only the generated tokens' rows,
            ``capture.step_attentions`` ``[layer, head, step, key]``.
        head_reduce: ``"none"`` (default) or ``"mean"``: the kept heads' mean, a head axis of size 1.
        memory_budget: bytes or text like ``"4GB"``; a capture estimated to need more is refused before
            generation with the options that fit (default: half the free device memory; ``"off"``).
        sources: where each prompt came from (stored in ``capture.meta.source``).
        settings: a ready :class:`GenerationSettings` (overrides the keyword arguments).
        on_step: called after every decoding step as ``on_step(steps_done, max_new_tokens)``
            (for a progress bar). To cancel, raise from it: the exception propagates out of
            ``generate``, the model's hooks are removed and nothing is returned. It runs inside
            ``torch.inference_mode()``, as the generation does.

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
            stop_strings=stop_strings,  # type: ignore[arg-type]
            seed=seed,
            top_k_logits=top_k_logits,
            keep_logits=keep_logits,
            keep_attention=keep_attention,
            attention_dtype=attention_dtype,  # type: ignore[arg-type]
            truncate_prompt=truncate_prompt,
            keep_hidden_states=keep_hidden_states,
            keep_value_norms=keep_value_norms,
            hidden_dtype=hidden_dtype,  # type: ignore[arg-type]
            lens_k=lens_k,
            layers=layers,  # type: ignore[arg-type]
            heads=heads,  # type: ignore[arg-type]
            attention_rows=attention_rows,
            head_reduce=head_reduce,
            memory_budget=memory_budget,
        )
    single = isinstance(prompts, str)
    settings, batch, source_list = _prepare(im, prompts, settings, sources)
    captures, _ = _run(im, batch, settings, source_list, on_step)
    if single and settings.num_return_sequences == 1:
        return captures[0]
    return captures


def generate_with_prompt_cache(
    im: ModelHandle,
    prompts: Sequence[str],
    settings: GenerationSettings,
    sources: Sequence[dict[str, Any]],
) -> tuple[list[Capture], PromptCache | None]:
    """:func:`generate` for a batch, also handing back the prompts' KV cache for passes that extend them.

    The cache (:class:`~inspector.capture.prompt_cache.PromptCache`) saves a teacher-forced pass
    after the same prompts its prefill, as a corpus run's reference scoring does. It is ``None``
    when there is no row-per-prompt cache to hand on: beam search, several sequences per prompt, or a
    cache that cannot be cropped (sliding windows, static caches).
    """
    settings, batch, source_list = _prepare(im, prompts, settings, sources)
    return _run(im, batch, settings, source_list, keep_cache=True)


def _prepare(
    im: ModelHandle,
    prompts: str | Sequence[str],
    settings: GenerationSettings,
    sources: Sequence[dict[str, Any]] | dict[str, Any] | None,
) -> tuple[GenerationSettings, PromptBatch, list[dict[str, Any]]]:
    """Settings checked against the model, the encoded batch and one source per prompt; every check
    (prompts, layers/heads, sources, memory budget) before any model work."""
    _, prompt_list = check_prompts(prompts)
    # layers/heads against the model, before any model work (a slice or negative ids need its size)
    settings = settings.selected(im.num_layers, im.num_heads, im.name)
    if isinstance(sources, dict) or sources is None:
        source_list = [dict(sources or {"kind": "text"}) for _ in prompt_list]
    else:
        source_list = [dict(s) for s in sources]
        if len(source_list) != len(prompt_list):
            raise ValueError(f"got {len(source_list)} sources for {len(prompt_list)} prompts")
    batch = encode_prompts(im, prompt_list, settings)
    check_budget(settings, ModelSizes.of(im.model), [batch.p_max - pad for pad in batch.pads], im.device)
    return settings, batch, source_list


@torch.no_grad()
def _run(
    im: ModelHandle,
    batch: PromptBatch,
    settings: GenerationSettings,
    sources: list[dict[str, Any]],
    on_step: Callable[[int, int], None] | None = None,
    keep_cache: bool = False,
) -> tuple[list[Capture], PromptCache | None]:
    from transformers import LogitsProcessorList, StoppingCriteriaList

    model: Any = im.model
    tok = im.tokenizer
    dev = im.device
    n_prompts = len(batch.prompts)
    expand = settings.num_beams if settings.num_beams > 1 else settings.num_return_sequences
    rows = n_prompts * expand
    gen_config = settings.generation_config(model, tok)
    stopper = stop_string_criteria(tok, settings.stop_strings) if settings.stop_strings else None
    sizes = ModelSizes.of(model)
    kept = estimate_capture(settings, sizes, [batch.p_max - pad for pad in batch.pads]).kept
    # hidden states: the prefill's float32 states of every layer already take the room a block would
    group = 1 if settings.record_hidden_states else group_steps(rows, sizes.vocab_size, kept)
    rec = Recorder(im, settings, rows, batch.p_max, stopper, stats_group=group)
    rec.on_step = on_step
    processor, criterion = rec.hf_objects()
    input_ids = batch.input_ids.to(dev)
    mask = batch.attention_mask.to(dev)
    rng: Any = contextlib.nullcontext()
    if settings.seed is not None:
        rng = torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [])
    cache: dict[str, Any] = {}
    # one row per prompt (the cache is never reordered)
    if expand == 1 and settings.num_beams == 1:
        # every position the generation and its extra step write: the prompt and each new token
        reserved = reserved_cache(model, batch.p_max + settings.max_new_tokens, gen_config)
        if reserved is not None:
            cache[cache_kwarg(model)] = reserved
            gen_config.cache_implementation = None  # the cache is given (generate refuses both)
    # inference mode: ``generate`` runs ~2-4% faster than under its own ``no_grad`` (no version counters
    # or autograd bookkeeping per op). Tensors made in it are inference tensors, so what is handed back is
    # not: the recorder's buffers (made above) and the reserved cache's room (reserved_cache) are made
    # outside it, and the steps are stacked and the captures assembled after it.
    with rng, rec.attached(), torch.inference_mode():
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            generation_config=gen_config,
            logits_processor=LogitsProcessorList([*settings.warpers(), processor]),
            stopping_criteria=StoppingCriteriaList([criterion]),
            **cache,
        )
        sequences = out.sequences  # [rows_out, p_max + T]
        rec.finish(sequences)
        total_steps = int(sequences.shape[1]) - batch.p_max
        needs_last = settings.keep_attention or rec.layers.active
        if not settings.num_beams > 1 and needs_last and rec.forward_calls < total_steps + 1:
            _final_cached_step(rec, out, sequences, mask, expand)
    beam_indices = getattr(out, "beam_indices", None) if settings.num_beams > 1 else None
    steps = StackedSteps.from_log(rec.log, total_steps, rec.finish_step, rec.finish_reason)
    captures = assemble(im, batch, settings, sources, rec, steps, sequences, beam_indices, stopper)
    prompt_cache = None
    if keep_cache and expand == 1 and settings.num_beams == 1:
        prompt_cache = PromptCache(generated_cache(out), batch.input_ids, batch.attention_mask)
        if not prompt_cache.reusable():
            prompt_cache = None
    return captures, prompt_cache


def _final_cached_step(rec: Recorder, out: Any, sequences: torch.Tensor, mask: torch.Tensor, expand: int) -> None:
    """One more cached decoding step over the last generated token, for its attention row (and layer states)."""
    model = rec.im.model
    cache = generated_cache(out)
    full_mask = mask.repeat_interleave(expand, dim=0) if expand > 1 else mask
    steps = int(sequences.shape[1]) - int(mask.shape[1])
    full_mask = torch.cat([full_mask, full_mask.new_ones((full_mask.shape[0], steps))], dim=1)
    position_ids = (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -1:]
    rec.record_logits = False
    kwargs = {cache_kwarg(model): cache}
    # nothing reads this step's logits: the output layer gets no position (at batch 16 the vocabulary
    # projection was a fifth of the step)
    with output_layer_input(model, lambda hidden: hidden[..., :0, :]):
        model(
            input_ids=sequences[:, -1:],
            attention_mask=full_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
