"""Generation with capture: one cached ``generate`` call, recorded, plus one extra cached step.

Nothing is asked of ``generate`` that it would accumulate (no ``output_attentions`` or
``output_logits``): the :class:`~inspector._capture.recorder.Recorder` reads each step's
attention weights and logits as they are produced and reduces them at once. The last
generated token's attention row needs one more cached decoding step, taken after
``generate`` returns. The per-step statistics are then stacked
(:class:`~inspector._capture.steps.StackedSteps`) and assembled into captures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Unpack

import torch

from inspector._capture.assemble import assemble
from inspector._capture.budget import ModelSizes, check_budget, estimate_capture
from inspector._capture.encode import PromptBatch, check_prompts, encode_prompts
from inspector._capture.greedy_stats import group_steps
from inspector._capture.interventions import Intervener, InterventionPlan, intervening, plan, row_mask
from inspector._capture.overrides import SettingsOverrides, with_overrides
from inspector._capture.prompt_cache import PromptCache
from inspector._capture.recorder import Recorder
from inspector._capture.reserved_cache import reserved_cache
from inspector._capture.settings import GenerationSettings
from inspector._capture.steps import StackedSteps
from inspector._compat import cache_kwarg, generated_cache, output_layer_input, stop_string_criteria
from inspector._fileformat import source_dicts

if TYPE_CHECKING:  # pragma: no cover
    from inspector._handle import ModelHandle
    from inspector._records.capture import Capture


def generate(
    model: ModelHandle,
    prompts: str | Sequence[str],
    *,
    settings: GenerationSettings | None = None,
    sources: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    **overrides: Unpack[SettingsOverrides],
) -> Capture | list[Capture]:
    """Generate from one prompt or a batch and capture every step.

    Args:
        model: a model from :func:`inspector.load_model`.
        prompts: a string, or a list of strings generated together in one left-padded batch.
        settings: a ready :class:`GenerationSettings` (default: the defaults).
        sources: where each prompt came from (stored in ``capture.meta.source``).
        on_step: called after every decoding step as ``on_step(steps_done, max_new_tokens)``
            (for a progress bar). To cancel, raise from it: the exception propagates out of
            ``generate``, the model's hooks are removed and nothing is returned. It runs inside
            ``torch.inference_mode()``, as the generation does.
        overrides: any :class:`GenerationSettings` field by name (``max_new_tokens=20``,
            ``layers="0-3"``, ...), replacing the same field of ``settings``; every field, its
            meaning and bounds are listed there (:class:`~inspector._capture.overrides.SettingsOverrides`
            types them). ``ablate=``/``ablate_mode=`` switch parts off and ``patch=`` writes another
            capture's residual stream in (``patch_from=`` takes that :class:`Capture`); exactly what each
            replaces is in :mod:`inspector._capture.interventions`, what was done in ``meta.interventions``.

    Returns:
        A :class:`Capture` for a string; a list for a list of prompts, prompt-major (all sequences
        of prompt 0, then prompt 1, ...).

    Raises:
        ValueError: bad settings or prompts, or a string prompt with several returned sequences
            (pass ``[prompt]`` to get them as a list), before any model work.
        NonFiniteError: the model produced NaN/inf (names step and layer).
    """
    source = overrides.get("patch_from")
    if source is not None and _is_capture(source):  # the settings keep a path (the file it was read from) only
        overrides = {k: v for k, v in overrides.items() if k != "patch_from"}  # type: ignore[assignment]
    settings = with_overrides(settings, overrides)
    single = isinstance(prompts, str)
    if single and settings.num_return_sequences > 1:
        raise ValueError(f"num_return_sequences={settings.num_return_sequences} returns several captures: pass "
                         "the prompt in a list, [prompt], to get them as a list")
    settings, batch, source_list, ivp = _prepare(model, prompts, settings, sources,
                                                 source if _is_capture(source) else None)  # type: ignore[arg-type]
    captures, _ = _run(model, batch, settings, source_list, on_step, ivp=ivp)
    return captures[0] if single else captures


def generate_with_prompt_cache(
    model: ModelHandle,
    prompts: Sequence[str],
    settings: GenerationSettings,
    sources: Sequence[dict[str, Any]],
) -> tuple[list[Capture], PromptCache | None]:
    """:func:`generate` for a batch, also handing back the prompts' KV cache for passes that extend them.

    The cache (:class:`~inspector._capture.prompt_cache.PromptCache`) saves a teacher-forced pass
    after the same prompts its prefill, as a corpus run's reference scoring does. It is ``None``
    when there is no row-per-prompt cache to hand on: beam search, several sequences per prompt, or a
    cache that cannot be cropped (sliding windows, static caches).
    """
    settings, batch, source_list, ivp = _prepare(model, prompts, settings, sources)
    return _run(model, batch, settings, source_list, keep_cache=True, ivp=ivp)


def _is_capture(value: object) -> bool:
    from inspector._records.capture import Capture

    return isinstance(value, Capture)



def _prepare(
    model: ModelHandle,
    prompts: str | Sequence[str],
    settings: GenerationSettings,
    sources: Sequence[dict[str, Any]] | dict[str, Any] | None,
    patch_from: Capture | None = None,
) -> tuple[GenerationSettings, PromptBatch, list[dict[str, Any]], InterventionPlan | None]:
    """Settings checked against the model, the encoded batch, one source per prompt and the interventions;
    every check (prompts, layers/heads, sources, memory budget, interventions) before any model work."""
    _, prompt_list = check_prompts(prompts)
    # layers/heads against the model, before any model work (a slice or negative ids need its size)
    settings = settings.selected(model.num_layers, model.num_heads, model.name)
    source_list = source_dicts(sources, len(prompt_list))
    batch = encode_prompts(model, prompt_list, settings)
    check_budget(settings, ModelSizes.of(model.model), [batch.p_max - pad for pad in batch.pads], model.device)
    ivp = plan(model, settings, [batch.p_max - pad for pad in batch.pads], patch_from)
    return settings, batch, source_list, ivp


@torch.no_grad()
def _run(
    model: ModelHandle,
    batch: PromptBatch,
    settings: GenerationSettings,
    sources: list[dict[str, Any]],
    on_step: Callable[[int, int], None] | None = None,
    keep_cache: bool = False,
    ivp: InterventionPlan | None = None,
) -> tuple[list[Capture], PromptCache | None]:
    from transformers import LogitsProcessorList, StoppingCriteriaList

    hf: Any = model.model
    tok = model.tokenizer
    dev = model.device
    n_prompts = len(batch.prompts)
    expand = settings.num_beams if settings.num_beams > 1 else settings.num_return_sequences
    rows = n_prompts * expand
    gen_config = settings.generation_config(hf, tok)
    # A repetition penalty leaves beam search's processed log-probabilities unnormalised, so the beam scores are
    # not the recorded ones summed (beams.beam_score): take generate's own, which come only with per-step copies.
    hf_beam_scores = settings.num_beams > 1 and settings.repetition_penalty != 1.0
    gen_config.output_scores = gen_config.output_scores or hf_beam_scores
    stopper = stop_string_criteria(tok, settings.stop_strings) if settings.stop_strings else None
    sizes = ModelSizes.of(hf)
    kept = estimate_capture(settings, sizes, [batch.p_max - pad for pad in batch.pads]).kept
    # hidden states: the prefill's float32 states of every layer already take the room a block would
    group = 1 if settings.record_hidden_states else group_steps(rows, sizes.vocab_size, kept)
    rec = Recorder(model, settings, rows, batch.p_max, stopper, stats_group=group)
    rec.on_step = on_step
    processor, criterion = rec.hf_objects()
    input_ids = batch.input_ids.to(dev)
    mask = batch.attention_mask.to(dev)
    iv = None if ivp is None else Intervener(hf, ivp, row_mask(batch.attention_mask, expand))
    rng: Any = contextlib.nullcontext()
    if settings.seed is not None:
        rng = torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [])
    cache: dict[str, Any] = {}
    # one row per prompt (the cache is never reordered)
    if expand == 1 and settings.num_beams == 1:
        # every position the generation and its extra step write: the prompt and each new token
        reserved = reserved_cache(hf, batch.p_max + settings.max_new_tokens, gen_config)
        if reserved is not None:
            cache[cache_kwarg(hf)] = reserved
            gen_config.cache_implementation = None  # the cache is given (generate refuses both)
    # inference mode: ``generate`` runs ~2-4% faster than under its own ``no_grad`` (no version counters
    # or autograd bookkeeping per op). Tensors made in it are inference tensors, so what is handed back is
    # not: the recorder's buffers (made above) and the reserved cache's room (reserved_cache) are made
    # outside it, and the steps are stacked and the captures assembled after it.
    with rng, rec.attached(), intervening(iv), torch.inference_mode():
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        out = hf.generate(
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
    beam_scores = getattr(out, "sequences_scores", None) if hf_beam_scores else None
    if hf_beam_scores:
        out["scores"] = None  # [rows, vocab] per step, kept by generate with the beam scores: not needed further
    steps = StackedSteps.from_log(rec.log, total_steps, rec.finish_step, rec.finish_reason)
    with intervening(iv if beam_indices is not None else None):  # beams' final passes
        lp = gen_config.length_penalty  # transformers reads None as 1.0
        captures = assemble(model, batch, settings, sources, rec, steps, sequences, beam_indices, stopper, iv,
                            beam_scores=beam_scores, length_penalty=1.0 if lp is None else float(lp))
    prompt_cache = None
    if keep_cache and expand == 1 and settings.num_beams == 1:
        prompt_cache = PromptCache(generated_cache(out), batch.input_ids, batch.attention_mask)
        if not prompt_cache.reusable():
            prompt_cache = None
    return captures, prompt_cache


def _final_cached_step(rec: Recorder, out: Any, sequences: torch.Tensor, mask: torch.Tensor, expand: int) -> None:
    """One more cached decoding step over the last generated token, for its attention row (and layer states)."""
    hf = rec.model.model
    cache = generated_cache(out)
    full_mask = mask.repeat_interleave(expand, dim=0) if expand > 1 else mask
    steps = int(sequences.shape[1]) - int(mask.shape[1])
    full_mask = torch.cat([full_mask, full_mask.new_ones((full_mask.shape[0], steps))], dim=1)
    position_ids = (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -1:]
    rec.record_logits = False
    kwargs = {cache_kwarg(hf): cache}
    # nothing reads this step's logits: the output layer gets no position (at batch 16 the vocabulary
    # projection was a fifth of the step)
    with output_layer_input(hf, lambda hidden: hidden[..., :0, :]):
        hf(
            input_ids=sequences[:, -1:],
            attention_mask=full_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
