"""Executing a corpus run: generate batch by batch with capture, write captures and summary parts, finalize.

See :mod:`inspector.runs.folder` for what the folder holds and how a killed run resumes,
:mod:`inspector.runs.summary` for the summary's columns, and
:data:`~inspector.runs.config.ATTENTION_MODES` for what a kept capture holds.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from inspector._devices import dtype_name
from inspector._metrics import turn_metrics
from inspector.runs.config import RunConfig, RunError
from inspector.runs.folder import (
    RUN_FORMAT,
    RUN_SCHEMA_VERSION,
    SUMMARY_FILE,
    capture_relpath,
    check_resumable,
    command_identity,
    folder_lock,
    now,
    part_path,
    remove_stale_temporaries,
    write_run_json,
    writing,
)
from inspector.runs.head_stats import turn_head_stats, write_batch_head_stats
from inspector.runs.load import Run, load_run
from inspector.runs.plan import RunPlan, WorkItem, plan_run
from inspector.runs.summary import coerce, describe_missing, done_batches, missing_files, read_parts, write_table

if TYPE_CHECKING:  # pragma: no cover
    import os

    from inspector._capture.prompt_cache import PromptCache
    from inspector._model import InspectorModel
    from inspector._records.capture import Capture


class BatchRunner(Protocol):
    """Runs the batches ``todo`` of ``plan`` into ``out`` (each through :func:`capture_batch`'s writes),
    calling ``finished(b)`` in the calling process as each batch's part file is on disk."""

    @property
    def device(self) -> str | None:
        """Device type the batches run on (``None``: the driver model's)."""

    @property
    def dtype(self) -> str | None:
        """Dtype they run with (``None``: the driver model's)."""

    def __call__(self, config: RunConfig, out: Path, plan: RunPlan, todo: list[int],
                 finished: Callable[[int], None]) -> None: ...


def _run_device(model: InspectorModel, runner: BatchRunner | None) -> tuple[str, str]:
    device = runner.device if runner is not None and runner.device else model.device.type
    dtype = runner.dtype if runner is not None and runner.dtype else dtype_name(model.dtype)
    return device, dtype


def _reduce_attention(capture: Capture, mode: str) -> Capture:
    if mode != "summary" or capture.attentions is None:
        return capture
    att = capture.attentions
    heads = int(att.shape[1])
    mean = att.sum(dim=1, keepdim=True, dtype=torch.float32).div_(heads).to(att.dtype)
    meta = dataclasses.replace(
        capture.meta,
        extra={**capture.meta.extra, "attention": "summary",
               "attention_reduction": f"mean over {heads} heads; the head axis has size 1"},
    )
    return dataclasses.replace(capture, attentions=mean, meta=meta)


def _row(item: WorkItem, capture: Capture, metrics: Mapping[str, Any], capture_file: str | None,
         seconds: float, batch: int) -> dict[str, Any]:
    lab = item.labels
    return {
        "dial_id": lab["dial_id"],
        "turn": lab["turn"],
        "split": lab["split"],
        "act": lab["act"],
        "emotion": lab["emotion"],
        "response_act": lab["response_act"],
        "response_emotion": lab["response_emotion"],
        "prompt_text": item.prompt.text,
        "generated_text": capture.generated_text,
        "response": lab["response"],
        "stop_reason": capture.stop_reason,
        **metrics,
        "seconds": seconds,
        "capture_file": capture_file,
        "utterance": lab["utterance"],
        "context_turns": len(item.prompt.context_turns),
        "dropped_turns": item.prompt.dropped_turns,
        "truncated_chars": item.prompt.truncated_chars,
        "batch": batch,
    }


def _add_research(config: RunConfig, model: InspectorModel, batch: Sequence[WorkItem], captures: Sequence[Capture],
                  kept: list[Capture], metrics: list[dict[str, Any]],
                  prompt_cache: PromptCache | None = None) -> list[Capture]:
    """Merge each turn's research columns into its metrics; keep the condition's attention share in the capture.

    The reference reply is scored after the plain prompt (and after the conditioned one with a
    condition) by :func:`~inspector.research.turns.research_columns`. ``attn_condition`` is read off
    the generation itself, whose prompt is the conditioned one: the ``[layer, head]`` share goes into
    the kept capture's ``meta.extra["condition_attention"]`` (a summary capture has no heads left to
    recompute it from) and its mean into the summary.
    """
    from inspector.research.condition import CONDITION_SHARE_COLUMN, condition_attention_share, condition_positions
    from inspector.research.turns import research_columns

    conditioned = config.condition != "none"
    columns = research_columns(model, [it.plain_prompt for it in batch], [it.labels["response"] for it in batch],
                               [it.target for it in batch] if conditioned else None,
                               style=config.condition_style, condition_share=False, prompt_cache=prompt_cache)
    out = []
    for it, cap, small, m, cols in zip(batch, captures, kept, metrics, columns, strict=True):
        m.update(cols)
        positions = condition_positions(it.prompt.segments)
        if positions and cap.attentions is not None:
            share = condition_attention_share(cap.attentions, cap.prompt_len, positions)  # [layer, head]
            m[CONDITION_SHARE_COLUMN] = float(share.mean())
            extra = {**small.meta.extra, "condition_attention": [[round(float(v), 6) for v in row] for row in share],
                     "condition_attention_dims": "[layer, head]: mean over generated rows of the attention summed "
                                                 "over the condition tokens"}
            small = dataclasses.replace(small, meta=dataclasses.replace(small.meta, extra=extra))
        out.append(small)
    return out


def _model_info(model: InspectorModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "random_weights": bool(model.random_weights),
        "revision": model.revision,
        "device": str(model.device),
        "dtype": dtype_name(model.dtype),
        "num_layers": model.num_layers,
        "num_heads": model.num_heads,
        "context_length": model.context_length,
        **({"seed": model.info["seed"]} if "seed" in model.info else {}),
        **({"model_file": model.model_file} if model.model_file else {}),
    }


def _new_run_json(config: RunConfig, plan: RunPlan, model: InspectorModel, identity: dict[str, Any],
                  command: Sequence[str] | None) -> dict[str, Any]:
    from inspector._provenance import library_versions

    return {
        "format": RUN_FORMAT,
        "schema_version": RUN_SCHEMA_VERSION,
        "status": "running",
        "identity": identity,
        "command": list(command) if command is not None else None,
        "split": config.split,
        "data_source": plan.dataset.source,
        "filters": identity["filters"],
        "limit": config.limit,
        "batch_size": config.batch_size,
        "prompt": {"context_turns": config.context_turns, "template": identity["template"],
                   "max_prompt_tokens": plan.max_prompt_tokens},
        "attention": config.attention,
        "keep_captures": config.keep_captures,
        "generation": config.settings.to_dict(),
        **({"research": config.research} if config.research is not None else {}),
        "model": _model_info(model),
        "versions": library_versions(),
        "storage": {
            "summary": "summary.parquet: one row per turn, sorted by (dial_id, turn)",
            "parts": "parts/batch-NNNNNN.parquet: summary rows of one batch; present = batch done",
            "captures": ("captures/DDDDD-TTT.safetensors, one capture per turn (inspector.load_capture)"
                         if config.keep_captures else None),
            "attention": config.attention,
            "head_stats": ("parts/headstats-NNNNNN.safetensors: per-turn head statistics [turn, layer, head] of "
                           "batch NNNNNN, from the full attention (Run.head_stats)"
                           if config.attention != "none" else None),
        },
        "created": now(),
    }


def _complete_run(out: Path, doc: Mapping[str, Any] | None, plan: RunPlan) -> Run | None:
    """The folder's run when it is already complete for this plan (read only, nothing written), else ``None``."""
    if doc is None or doc.get("status") != "complete" or missing_files(out, doc):
        return None  # unfinished, or files went missing: the normal path redoes what is missing
    run = load_run(out)
    keys = sorted(zip(run.summary["dial_id"].tolist(), run.summary["turn"].tolist(), strict=True))
    if keys != sorted(it.key for it in plan.items):
        raise RunError(
            f"{out / SUMMARY_FILE} does not hold the turns this run planned; the run folder was modified. "
            "Delete summary.parquet and rerun the same command to rebuild it from parts/"
        )
    return run


def run_corpus(
    config: RunConfig,
    out: str | os.PathLike[str],
    model: InspectorModel,
    *,
    model_id: str | None = None,
    progress: bool = True,
    command: Sequence[str] | None = None,
    plan: RunPlan | None = None,
    log: Callable[[str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    runner: BatchRunner | None = None,
) -> Run:
    """Run (or resume) a corpus run into ``out`` and return it loaded.

    A run that is already complete is only read: nothing in ``out`` is written.

    Args:
        config: what to run.
        out: the run folder (created; an existing one is resumed if started with the same command).
        model: the model (:func:`inspector.load_model`).
        model_id: how the model was named (default ``model.name``), part of the command identity.
        progress: show a progress bar (turns done, turns/s, ETA) on stderr.
        command: the command line, recorded in run.json.
        plan: a ready :func:`~inspector.runs.plan.plan_run` result (else planned here).
        log: where one-line messages go (default: stderr).
        on_batch: called with each finished batch index (for tests and embedding).
        runner: runs the batches still to do elsewhere (e.g. on Ray workers,
            :mod:`inspector.runs.ray_backend`); default: one after the other in this process with ``model``.
            Its ``device`` and ``dtype`` (when not ``None``) are the ones the batches run with.

    Raises:
        RunMismatchError: ``out`` holds a run started with a different command.
        RunError, DailyDialogError, ValueError: bad settings or data, before any model work.
        OSError: a file could not be written (the message names it).
    """
    out = Path(out)
    say = log or (lambda msg: print(msg, file=sys.stderr))
    device, dtype = _run_device(model, runner)
    identity = command_identity(config, model_id or model.name, model.random_weights, device, dtype, model.tokenizer)
    check_resumable(out, identity)
    plan = plan or plan_run(config, model.tokenizer, model.context_length)
    identity["work_hash"] = plan.work_hash
    identity["num_turns"] = len(plan.items)
    doc = check_resumable(out, identity)
    complete = _complete_run(out, doc, plan)
    if complete is not None:
        say(f"{out} is already complete ({len(plan.items)} turns); nothing to generate or write")
        return complete
    lost = missing_files(out, doc)
    if lost:
        say(f"{out}: run.json records a complete run, but {describe_missing(lost)} "
            f"{'is' if len(lost) == 1 else 'are'} missing from the folder; redoing them")
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        remove_stale_temporaries(out)
        done = done_batches(out, plan)
        if doc is None:
            doc = _new_run_json(config, plan, model, identity, command)
            if runner is not None:
                doc["model"].update(device=device, dtype=dtype)
        doc["counts"] = _counts(plan, done)
        doc["updated"] = now()
        if len(done) < len(plan.batches):
            doc["status"] = "running"
            if done:
                doc.setdefault("resumed", []).append(doc["updated"])
        # run.json first: a folder killed before it exists holds nothing but the lock
        write_run_json(out, doc)
        for sub in ("parts", "captures") if config.keep_captures else ("parts",):
            with writing(out / sub):
                (out / sub).mkdir(exist_ok=True)
        if len(done) == len(plan.batches):
            say(f"{out}: every batch is done; writing its summary")
        elif done:
            say(f"resuming {out}: {doc['counts']['turns_done']} of {len(plan.items)} turns already done")
        _run_batches(config, out, model, plan, done, progress, doc, on_batch, say, runner)
        _finalize(out, plan, doc)
    return load_run(out)


def _counts(plan: RunPlan, done: set[int]) -> dict[str, int]:
    turns_done = sum(len(plan.batches[b]) for b in done)
    return {"turns": len(plan.items), "batches": len(plan.batches), "turns_done": turns_done,
            "batches_done": len(done)}


def _run_batches(config: RunConfig, out: Path, model: InspectorModel, plan: RunPlan, done: set[int],
                 progress: bool, doc: dict[str, Any], on_batch: Callable[[int], None] | None,
                 say: Callable[[str], None], runner: BatchRunner | None = None) -> None:
    from inspector.runs.progress import RunProgress, describe_estimate, measure_warmup

    todo = [b for b in range(len(plan.batches)) if b not in done]
    if progress and todo and runner is None:  # one short timed generation: the whole run's time, up front
        warm = measure_warmup(model, [it.prompt.text for it in plan.batches[todo[0]]], config.batch_settings(todo[0]))
        if warm is not None:
            say(describe_estimate(warm, [len(plan.batches[b]) for b in todo], config.settings.max_new_tokens))
    bar = RunProgress.open(len(plan.items), doc["counts"]["turns_done"], out.name, enabled=progress)

    def finished(b: int) -> None:
        done.add(b)
        bar.batch_done(len(plan.batches[b]))
        if on_batch is not None:
            on_batch(b)

    try:
        if runner is not None:
            runner(config, out, plan, todo, finished)
        else:
            for b in todo:
                capture_batch(config, out, model, plan, b, on_step=functools.partial(bar.step, len(plan.batches[b])))
                finished(b)
    except KeyboardInterrupt:
        bar.close()
        turns = sum(len(plan.batches[i]) for i in done)
        say(f"interrupted: {turns} of {len(plan.items)} turns are saved in {out}; rerun the same command to resume")
        raise
    bar.close()


def capture_batch(config: RunConfig, out: Path, model: InspectorModel, plan: RunPlan, b: int,
                  on_step: Callable[[int, int], None] | None = None) -> None:
    """Generate batch ``b`` of ``plan`` with ``model`` and write its captures, then its part file (marks it done).
    ``on_step(steps_done, max_new_tokens)`` follows the decoding (not with a condition's prompt cache).

    Whoever calls it (this process, or a Ray worker) must run the batch with the plan's exact
    batches and :meth:`RunConfig.batch_settings`, so that every backend writes the same rows.
    """
    import pandas as pd

    from inspector._capture.engine import generate, generate_with_prompt_cache

    batch = plan.batches[b]
    t0 = time.perf_counter()
    prompts, sources = [it.prompt.text for it in batch], [it.prompt.source() for it in batch]
    prompt_cache = None
    if config.score_reference and config.condition != "none":
        # the reference is scored after the conditioned prompt generated from: its prefill is reused
        captures, prompt_cache = generate_with_prompt_cache(model, prompts, config.batch_settings(b), sources)
    else:
        generated = generate(model, prompts, settings=config.batch_settings(b), sources=sources, on_step=on_step)
        assert isinstance(generated, list)
        captures = generated
    metrics, kept, head_stats = [], [], []
    for it, cap in zip(batch, captures, strict=True):
        if cap.token_ids[: cap.prompt_len].tolist() != list(it.prompt.token_ids):
            raise RunError(
                f"dialogue {it.key[0]} turn {it.key[1]}: the model's tokenizer split the prompt "
                "differently from the prompt builder; use the model's own tokenizer"
            )
        metrics.append(turn_metrics(cap, it.prompt.segments, it.prompt.turn, num_layers=model.num_layers))
        head_stats.append(turn_head_stats(cap))  # from the full attention, before any reduction
        kept.append(_reduce_attention(cap, config.attention))
    if config.score_reference:
        kept = _add_research(config, model, batch, captures, kept, metrics, prompt_cache)
    del prompt_cache
    files: list[str | None] = [None] * len(batch)
    if config.keep_captures:
        for i, (it, cap) in enumerate(zip(batch, kept, strict=True)):
            rel = files[i] = capture_relpath(*it.key)
            with writing(out / rel):
                cap.save(out / rel)
    seconds = (time.perf_counter() - t0) / len(batch)
    rows = [_row(it, cap, m, f, seconds, b)
            for it, cap, m, f in zip(batch, captures, metrics, files, strict=True)]
    if all(s is not None for s in head_stats):  # before the part: a done batch has its statistics
        write_batch_head_stats(out, b, [it.key for it in batch], [s for s in head_stats if s is not None])
    write_table(coerce(pd.DataFrame(rows)), part_path(out, b))


def _finalize(out: Path, plan: RunPlan, doc: dict[str, Any]) -> None:
    summary = read_parts(out, len(plan.batches))
    write_table(summary, out / SUMMARY_FILE)
    doc["status"] = "complete"
    doc["counts"] = _counts(plan, set(range(len(plan.batches))))
    doc["updated"] = doc["finished"] = now()
    doc["total_seconds"] = float(summary["seconds"].sum()) if len(summary) else 0.0
    write_run_json(out, doc)
