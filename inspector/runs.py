"""Corpus runs: batched captures over many DailyDialog turns, resumable, with one summary table.

A run folder (``runs/NAME/``) holds::

    run.json                      settings, model, versions, counts, status (running/complete)
    summary.parquet               one row per turn, sorted by (dial_id, turn); written at the end
    parts/batch-000012.parquet    the summary rows of batch 12: written last, it marks the batch done
    captures/00012-003.safetensors  one capture per turn (dial_id 12, turn 3), unless --no-captures;
                                    each loads with :func:`inspector.load_capture`

Turns are planned deterministically: the selected turns (after filters and ``limit``, in
``(dial_id, turn)`` order) are sorted by prompt length (stable, so batches need little
padding) and cut into fixed batches. A batch's captures are written first, then its
summary part; every file is written atomically (temporary file + rename). A run killed at
any moment (Ctrl-C or SIGKILL) and started again with the same command redoes only the
batches without a part, with exactly the same batch composition, so the final
``summary.parquet`` equals that of an uninterrupted run (except the ``seconds`` timing
column) and holds no duplicated or half-written rows. A different command against an
existing run folder is refused (:class:`RunMismatchError`), naming what differs.

``summary.parquet`` columns (one row per turn; label columns hold names such as
``"question"`` or ``"happiness"``, and ``None`` where absent, e.g. the response labels of a
dialogue's last turn):

* ``dial_id``, ``turn``, ``split``, ``act``, ``emotion``, ``response_act``, ``response_emotion``;
* ``prompt_text``, ``generated_text``, ``response`` (the reference next turn), ``utterance``;
* ``prompt_tokens``, ``generated_tokens``, ``stop_reason``; ``context_turns`` (turns shown),
  ``dropped_turns`` / ``truncated_chars`` (what the token budget removed);
* ``entropy_mean``, ``entropy_max``, ``chosen_prob_mean``, ``chosen_rank_mean`` and the
  attention columns ``attn_*`` (defined in :mod:`inspector.metrics`), with one
  ``attn_entropy_L{l}`` per layer;
* ``seconds``: the turn's share of its batch's wall time (generation, metrics and writing
  divided by the batch size); ``batch``: the batch it was generated in;
* ``capture_file``: the capture's path relative to the run folder (``None`` with ``--no-captures``).

``attention`` decides what a kept capture holds: ``"full"`` (``[layer, head, seq, seq]``
float16; 3.1 MB for a 64+40-token GPT-2 small turn), ``"summary"`` (the default: the mean
over heads, stored as ``[layer, 1, seq, seq]`` with ``meta.extra["attention"] == "summary"``;
0.26 MB for such a turn) or ``"none"`` (no attention weights, and NaN attention columns).
The summary's attention columns are always computed from the full weights before reduction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inspector._atomic import atomic_path, write_text_atomic
from inspector.capture import GenerationSettings
from inspector.data.dailydialog import ACT_NAMES, EMOTION_NAMES, filter_turns, load_dailydialog
from inspector.data.prompts import Prompt, build_prompt, get_template
from inspector.metrics import SHARE_COLUMNS, attention_columns, turn_metrics

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector.data.dailydialog import DailyDialog
    from inspector.model import InspectorModel
    from inspector.records import Capture

RUN_FORMAT = "inspector.run"
RUN_SCHEMA_VERSION = 1
ATTENTION_MODES: tuple[str, ...] = ("full", "summary", "none")
STATS_BY: tuple[str, ...] = ("emotion", "act", "response_emotion", "response_act")
#: Columns averaged by :func:`stats`.
STATS_COLUMNS: tuple[str, ...] = (
    "entropy_mean",
    "chosen_prob_mean",
    "attn_prompt_share",
    "attn_generated_share",
    "attn_first_share",
    "attn_last_user_turn",
    "attn_earlier_turns",
    "attn_speaker_user",
    "attn_speaker_agent",
)
_INT_COLUMNS = ("dial_id", "turn", "prompt_tokens", "generated_tokens", "context_turns", "dropped_turns",
                "truncated_chars", "batch")
_STR_COLUMNS = ("split", "act", "emotion", "response_act", "response_emotion", "prompt_text", "generated_text",
                "response", "stop_reason", "capture_file", "utterance")
_LEAD_COLUMNS = ("dial_id", "turn", "split", "act", "emotion", "response_act", "response_emotion", "prompt_text",
                 "generated_text", "response", "prompt_tokens", "generated_tokens", "stop_reason", "entropy_mean",
                 "entropy_max", "chosen_prob_mean")


class RunError(ValueError):
    """A run cannot start, resume or be read; the message says why."""


class RunMismatchError(RunError):
    """The run folder was started with a different command."""


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class RunConfig:
    """What a corpus run does (everything but the model).

    Attributes:
        split: DailyDialog split.
        data: DailyDialog source for :func:`~inspector.data.dailydialog.load_dailydialog`
            (folder, table file, ``"hub"``; ``None``: ``INSPECTOR_DAILYDIALOG_DIR`` or the Hub).
        filters: keyword arguments of :func:`~inspector.data.dailydialog.filter_turns`.
        limit: keep the first ``limit`` selected turns (in ``(dial_id, turn)`` order).
        batch_size: prompts generated together.
        context_turns: ``k``, dialogue turns shown in each prompt.
        template: prompt template name or line format (see :mod:`inspector.data.prompts`).
        max_prompt_tokens: prompt token budget (default: context length minus ``max_new_tokens``).
        attention: ``"full"``, ``"summary"`` or ``"none"`` (see the module docstring).
        keep_captures: write one capture file per turn.
        settings: generation settings; with sampling and no seed, seed 0 is used, and batch
            ``b`` is generated with seed ``seed + b`` (reproducible, so resumable).
    """

    split: str = "validation"
    data: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    batch_size: int = 16
    context_turns: int = 3
    template: str = "notebook"
    max_prompt_tokens: int | None = None
    attention: str = "summary"
    keep_captures: bool = True
    settings: GenerationSettings = field(default_factory=GenerationSettings)

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {list(ATTENTION_MODES)}, got {self.attention!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"limit must be a positive integer, got {self.limit!r}")
        if not isinstance(self.context_turns, int) or self.context_turns < 1:
            raise ValueError(f"context_turns must be an integer >= 1, got {self.context_turns!r}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.settings.num_return_sequences != 1:
            raise ValueError("corpus runs keep one sequence per turn; use num_return_sequences=1")
        get_template(self.template)  # validates
        s = self.settings
        wanted = {"keep_attention": self.attention != "none", "truncate_prompt": False}
        if s.do_sample and s.seed is None:
            wanted["seed"] = 0
        if any(getattr(s, k) != v for k, v in wanted.items()):
            object.__setattr__(self, "settings", dataclasses.replace(s, **wanted))

    def batch_settings(self, batch: int) -> GenerationSettings:
        """Settings of batch ``batch`` (sampling seeds differ per batch, reproducibly)."""
        if self.settings.do_sample:
            return dataclasses.replace(self.settings, seed=int(self.settings.seed or 0) + batch)
        return self.settings


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class WorkItem:
    """One turn to generate for: its prompt and its labels."""

    index: int
    prompt: Prompt
    labels: Mapping[str, Any]

    @property
    def key(self) -> tuple[int, int]:
        return int(self.labels["dial_id"]), int(self.labels["turn"])


@dataclass(frozen=True)
class RunPlan:
    """The turns of a run, their prompts, and the fixed batches they are generated in."""

    dataset: DailyDialog
    items: tuple[WorkItem, ...]
    batches: tuple[tuple[WorkItem, ...], ...]
    max_prompt_tokens: int

    @property
    def work_hash(self) -> str:
        """Hash of every selected turn and its prompt text (what a resume must find unchanged)."""
        h = hashlib.sha256()
        for b, batch in enumerate(self.batches):
            for it in batch:
                h.update(f"{b}\t{it.key[0]}\t{it.key[1]}\t{it.prompt.text}\n".encode())
        return h.hexdigest()


def _none(v: Any) -> Any:
    try:
        import pandas as pd

        return None if v is None or pd.isna(v) else v
    except (TypeError, ValueError):
        return v


def plan_run(config: RunConfig, tokenizer: Any, context_length: int, dataset: DailyDialog | None = None) -> RunPlan:
    """Load the split, select turns, build prompts and cut them into batches (no model work)."""
    dataset = dataset if dataset is not None else load_dailydialog(config.split, config.data)
    budget_max = context_length - config.settings.max_new_tokens
    if budget_max < 1:
        raise RunError(f"max_new_tokens={config.settings.max_new_tokens} leaves no room in the "
                       f"{context_length}-token context")
    budget = config.max_prompt_tokens or budget_max
    if budget > budget_max:
        raise RunError(
            f"max_prompt_tokens={budget} plus max_new_tokens={config.settings.max_new_tokens} exceeds the "
            f"model's {context_length}-token context; lower one of them"
        )
    table = filter_turns(dataset.turns(), **dict(config.filters))
    if config.limit is not None:
        table = table.head(config.limit)
    if table.empty:
        raise RunError(f"no DailyDialog {config.split} turns match the filters {dict(config.filters)}")
    items = []
    for i, row in enumerate(table.itertuples(index=False)):
        labels = {
            "dial_id": int(row.dial_id),
            "turn": int(row.turn),
            "split": dataset.split,
            "act": row.act,
            "emotion": row.emotion,
            "response_act": _none(row.response_act),
            "response_emotion": _none(row.response_emotion),
            "response": _none(row.response),
            "utterance": row.utterance,
        }
        prompt = build_prompt(
            dataset[int(row.dial_id)].turns,
            int(row.turn),
            tokenizer,
            context_turns=config.context_turns,
            template=config.template,
            max_tokens=budget,
            split=dataset.split,
            dial_id=int(row.dial_id),
            extra={"act": row.act, "emotion": row.emotion, "response_act": labels["response_act"],
                   "response_emotion": labels["response_emotion"]},
        )
        items.append(WorkItem(i, prompt, labels))
    ordered = sorted(items, key=lambda it: len(it.prompt))
    b = config.batch_size
    batches = tuple(tuple(ordered[i : i + b]) for i in range(0, len(ordered), b))
    return RunPlan(dataset, tuple(items), batches, budget)


# --------------------------------------------------------------------------- folder state
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _model_id(name: str) -> str:
    p = Path(name).expanduser()
    return str(p.resolve()) if p.is_dir() else name


def command_identity(config: RunConfig, model: str, random_weights: bool, device: str, dtype: str) -> dict[str, Any]:
    """What must match to resume a run, known before the model is loaded."""
    return {
        "split": config.split,
        "filters": {k: (list(v) if isinstance(v, (list, tuple, set)) else v) for k, v in sorted(config.filters.items())},
        "limit": config.limit,
        "batch_size": config.batch_size,
        "context_turns": config.context_turns,
        "template": get_template(config.template).to_dict(),
        "max_prompt_tokens": config.max_prompt_tokens,
        "attention": config.attention,
        "keep_captures": config.keep_captures,
        "generation": config.settings.to_dict(),
        "model": _model_id(model),
        "random_weights": bool(random_weights),
        "device": device,
        "dtype": dtype,
    }


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _diff(a, b, f"{prefix}{k}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def read_run_json(path: Path) -> dict[str, Any]:
    """The run.json of a run folder (``RunError`` when missing or not a run)."""
    f = Path(path) / "run.json"
    if not f.is_file():
        raise RunError(f"{path} is not an inspector run folder (no run.json)")
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{f}: unreadable run.json ({exc})") from exc
    if doc.get("format") != RUN_FORMAT:
        raise RunError(f"{f}: not an inspector run.json (format {doc.get('format')!r})")
    if int(doc.get("schema_version", 0)) > RUN_SCHEMA_VERSION:
        raise RunError(f"{f}: run schema version {doc.get('schema_version')} is newer than this inspector reads")
    return doc


def check_resumable(out: str | os.PathLike[str], identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """Refuse a folder that is not a run, or a run started with a different command.

    Returns the existing run.json, or ``None`` for a new or empty folder.

    Raises:
        RunMismatchError: naming every setting that differs.
        RunError: the path is a file, or a non-empty folder that is not a run.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder")
    if not out.exists():
        return None
    if not (out / "run.json").is_file():
        if any(p.name != ".lock" for p in out.iterdir()):
            raise RunError(f"{out} is not empty and is not an inspector run folder; choose another --out")
        return None
    doc = read_run_json(out)
    diffs = _diff(doc.get("identity", {}), {**doc.get("identity", {}), **identity})
    if diffs:
        raise RunMismatchError(
            f"{out} holds a run started with a different command ({'; '.join(diffs)}). Rerun the original "
            "command to resume it, or choose another --out folder"
        )
    return doc


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    fh = open(out / ".lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise RunError(f"another inspector run is writing to {out} right now") from exc
        yield
    finally:
        fh.close()


def _part_path(out: Path, batch: int) -> Path:
    return out / "parts" / f"batch-{batch:06d}.parquet"


def capture_relpath(dial_id: int, turn: int) -> str:
    """Where a turn's capture lives inside a run folder."""
    return f"captures/{dial_id:05d}-{turn:03d}.safetensors"


def _remove_stale_temporaries(out: Path) -> None:
    for sub in ("parts", "captures", "."):
        folder = out / sub
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()


# --------------------------------------------------------------------------- summary rows
def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes and column order, so parts and resumed runs give identical tables."""
    import pandas as pd

    df = df.copy()
    for c in df.columns:
        if c in _INT_COLUMNS:
            df[c] = df[c].astype("int64")
        elif c in _STR_COLUMNS:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    lead = [c for c in _LEAD_COLUMNS if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


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


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


# --------------------------------------------------------------------------- running
def _versions() -> dict[str, str]:
    from inspector.model import library_versions

    return library_versions()


def _model_info(im: InspectorModel) -> dict[str, Any]:
    return {
        "name": im.name,
        "random_weights": bool(im.random_weights),
        "revision": im.revision,
        "device": str(im.device),
        "dtype": str(im.dtype).replace("torch.", ""),
        "num_layers": im.num_layers,
        "num_heads": im.num_heads,
        "context_length": im.context_length,
        **({"seed": im.info["seed"]} if "seed" in im.info else {}),
    }


def run_corpus(
    config: RunConfig,
    out: str | os.PathLike[str],
    im: InspectorModel,
    *,
    model_id: str | None = None,
    progress: bool = True,
    command: Sequence[str] | None = None,
    plan: RunPlan | None = None,
    log: Callable[[str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Run:
    """Run (or resume) a corpus run into ``out`` and return it loaded.

    Args:
        config: what to run.
        out: the run folder (created; an existing one is resumed if started with the same command).
        im: the model (:func:`inspector.load_model`).
        model_id: how the model was named (default ``im.name``), part of the command identity.
        progress: show a progress bar (turns done, turns/s, ETA) on stderr.
        command: the command line, recorded in run.json.
        plan: a ready :func:`plan_run` result (else planned here).
        log: where one-line messages go (default: stderr).
        on_batch: called with each finished batch index (for tests and embedding).

    Raises:
        RunMismatchError: ``out`` holds a run started with a different command.
        RunError, DailyDialogError, ValueError: bad settings or data, before any model work.
    """
    out = Path(out)
    say = log or (lambda msg: print(msg, file=sys.stderr))
    identity = command_identity(config, model_id or im.name, im.random_weights, im.device.type,
                                str(im.dtype).replace("torch.", ""))
    check_resumable(out, identity)
    plan = plan or plan_run(config, im.tokenizer, im.context_length)
    identity["work_hash"] = plan.work_hash
    identity["num_turns"] = len(plan.items)
    doc = check_resumable(out, identity)
    out.mkdir(parents=True, exist_ok=True)
    with _folder_lock(out):
        _remove_stale_temporaries(out)
        done = _done_batches(out, plan)
        if doc is None:
            doc = {
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
                "model": _model_info(im),
                "versions": _versions(),
                "storage": {
                    "summary": "summary.parquet: one row per turn, sorted by (dial_id, turn)",
                    "parts": "parts/batch-NNNNNN.parquet: summary rows of one batch; present = batch done",
                    "captures": ("captures/DDDDD-TTT.safetensors, one capture per turn (inspector.load_capture)"
                                 if config.keep_captures else None),
                    "attention": config.attention,
                },
                "created": _now(),
            }
        doc["counts"] = _counts(plan, done)
        doc["updated"] = _now()
        if len(done) < len(plan.batches):
            doc["status"] = "running"
            if done:
                doc.setdefault("resumed", []).append(doc["updated"])
        # run.json first: a folder killed before it exists holds nothing but the lock
        write_text_atomic(out / "run.json", json.dumps(doc, indent=2, ensure_ascii=False))
        (out / "parts").mkdir(exist_ok=True)
        if config.keep_captures:
            (out / "captures").mkdir(exist_ok=True)
        if len(done) == len(plan.batches):
            say(f"{out} is already complete ({len(plan.items)} turns); nothing to generate")
        elif done:
            say(f"resuming {out}: {doc['counts']['turns_done']} of {len(plan.items)} turns already done")
        _run_batches(config, out, im, plan, done, progress, doc, on_batch, say)
        _finalize(out, plan, doc)
    return load_run(out)


def _counts(plan: RunPlan, done: set[int]) -> dict[str, int]:
    turns_done = sum(len(plan.batches[b]) for b in done)
    return {"turns": len(plan.items), "batches": len(plan.batches), "turns_done": turns_done,
            "batches_done": len(done)}


def _done_batches(out: Path, plan: RunPlan) -> set[int]:
    """Batches whose summary part exists and holds exactly the planned turns."""
    import pandas as pd

    done = set()
    for b, batch in enumerate(plan.batches):
        part = _part_path(out, b)
        if not part.is_file():
            continue
        try:
            keys = pd.read_parquet(part, columns=["dial_id", "turn"])
        except Exception as exc:  # an atomic write never leaves a broken part; someone edited the folder
            raise RunError(f"{part}: unreadable summary part ({exc}); delete it to redo that batch") from exc
        if sorted(zip(keys["dial_id"].tolist(), keys["turn"].tolist())) != sorted(it.key for it in batch):
            raise RunError(f"{part} does not hold the turns planned for batch {b}; the run folder was modified")
        done.add(b)
    return done


def _run_batches(config: RunConfig, out: Path, im: InspectorModel, plan: RunPlan, done: set[int],
                 progress: bool, doc: dict[str, Any], on_batch: Callable[[int], None] | None,
                 say: Callable[[str], None]) -> None:
    import pandas as pd
    from tqdm.auto import tqdm

    from inspector.capture import generate

    todo = [b for b in range(len(plan.batches)) if b not in done]
    bar = tqdm(total=len(plan.items), initial=doc["counts"]["turns_done"], unit="turn", desc=out.name,
               disable=not progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.3,
               mininterval=0, miniters=1)  # a batch takes seconds: show every one
    num_layers = im.num_layers
    try:
        for b in todo:
            batch = plan.batches[b]
            t0 = time.perf_counter()
            captures = generate(im, [it.prompt.text for it in batch], settings=config.batch_settings(b),
                                sources=[it.prompt.source() for it in batch])
            assert isinstance(captures, list)
            metrics, kept = [], []
            for it, cap in zip(batch, captures):
                if cap.token_ids[: cap.prompt_len].tolist() != list(it.prompt.token_ids):
                    raise RunError(
                        f"dialogue {it.key[0]} turn {it.key[1]}: the model's tokenizer split the prompt "
                        "differently from the prompt builder; use the model's own tokenizer"
                    )
                metrics.append(turn_metrics(cap, it.prompt.segments, it.prompt.turn, num_layers=num_layers))
                kept.append(_reduce_attention(cap, config.attention))
            files: list[str | None] = [None] * len(batch)
            if config.keep_captures:
                for i, (it, cap) in enumerate(zip(batch, kept)):
                    files[i] = capture_relpath(*it.key)
                    cap.save(out / files[i])
            seconds = (time.perf_counter() - t0) / len(batch)
            rows = [_row(it, cap, m, f, seconds, b) for it, cap, m, f in zip(batch, captures, metrics, files)]
            _write_parquet(_coerce(pd.DataFrame(rows)), _part_path(out, b))
            done.add(b)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(b)
    except KeyboardInterrupt:
        bar.close()
        turns = sum(len(plan.batches[i]) for i in done)
        say(f"interrupted: {turns} of {len(plan.items)} turns are saved in {out}; rerun the same command to resume")
        raise
    bar.close()


def _finalize(out: Path, plan: RunPlan, doc: dict[str, Any]) -> None:
    summary = _read_parts(out, len(plan.batches))
    _write_parquet(summary, out / "summary.parquet")
    doc["status"] = "complete"
    doc["counts"] = _counts(plan, set(range(len(plan.batches))))
    doc["updated"] = doc["finished"] = _now()
    doc["total_seconds"] = float(summary["seconds"].sum()) if len(summary) else 0.0
    write_text_atomic(out / "run.json", json.dumps(doc, indent=2, ensure_ascii=False))


def _read_parts(out: Path, num_batches: int | None = None) -> pd.DataFrame:
    import pandas as pd

    if num_batches is None:
        paths = sorted((out / "parts").glob("batch-*.parquet"))
    else:
        paths = [p for p in (_part_path(out, b) for b in range(num_batches)) if p.is_file()]
    if not paths:
        return pd.DataFrame(columns=list(_LEAD_COLUMNS))
    df = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    df = df.sort_values(["dial_id", "turn"], kind="stable").reset_index(drop=True)
    if df.duplicated(["dial_id", "turn"]).any():
        raise RunError(f"{out}: duplicated turns across summary parts; the run folder was modified")
    return _coerce(df)


# --------------------------------------------------------------------------- reading runs
@dataclass
class Run:
    """A run folder, loaded by :func:`load_run`.

    Attributes:
        path: the folder.
        settings: the contents of its run.json (settings, model, versions, counts, status).
    """

    path: Path
    settings: dict[str, Any]
    _summary: Any = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return self.settings.get("status") == "complete"

    @property
    def summary(self) -> pd.DataFrame:
        """One row per turn (``summary.parquet``; for an unfinished run, the rows done so far)."""
        if self._summary is None:
            import pandas as pd

            f = self.path / "summary.parquet"
            self._summary = _coerce(pd.read_parquet(f)) if f.is_file() and self.complete else _read_parts(self.path)
        return self._summary

    def load_capture(self, dial_id: int, turn: int) -> Capture:
        """The capture of one turn.

        Raises:
            RunError: the turn is not in this run, or the run kept no captures.
        """
        from inspector.store import load_capture

        df = self.summary
        hit = df[(df["dial_id"] == int(dial_id)) & (df["turn"] == int(turn))]
        if hit.empty:
            raise RunError(f"dialogue {dial_id} turn {turn} is not in the run {self.path}")
        rel = hit.iloc[0]["capture_file"]
        if rel is None or (isinstance(rel, float) and rel != rel):
            raise RunError(
                f"the run {self.path} kept no captures (started with --no-captures); only its summary is "
                "available. Rerun into a new folder without --no-captures to keep them"
            )
        return load_capture(self.path / str(rel))

    def stats(self, by: str = "emotion") -> pd.DataFrame:
        """See :func:`stats`."""
        return stats(self.summary, by)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Open a run folder written by :func:`run_corpus` (finished or not)."""
    p = Path(path)
    return Run(p, read_run_json(p))


def stats(summary: pd.DataFrame, by: str = "emotion", columns: Sequence[str] = STATS_COLUMNS) -> pd.DataFrame:
    """Per-label table: ``count`` and the mean of every column in ``columns``.

    ``by`` is one of :data:`STATS_BY`. Rows follow the label order (inform, question, ...;
    no emotion, anger, ...); turns without the label (the last turn has no response) form
    a ``"(none)"`` row. NaN values (e.g. attention with ``--attention none``) are skipped.
    """
    import pandas as pd

    if by not in STATS_BY:
        raise ValueError(f"cannot group by {by!r}; choose one of {list(STATS_BY)}")
    if by not in summary.columns:
        raise ValueError(f"the summary has no {by!r} column")
    cols = [c for c in columns if c in summary.columns]
    key = summary[by].astype(object).where(summary[by].notna(), "(none)")
    grouped = summary[cols].groupby(key, sort=False)
    table = grouped.mean()
    table.insert(0, "count", grouped.size())
    names = list((ACT_NAMES if by.endswith("act") else EMOTION_NAMES).values())
    order = [n for n in names if n in table.index] + sorted(i for i in table.index if i not in names)
    table = table.loc[order]
    table.index.name = by
    return table


__all__ = [
    "ATTENTION_MODES",
    "SHARE_COLUMNS",
    "STATS_BY",
    "STATS_COLUMNS",
    "Run",
    "RunConfig",
    "RunError",
    "RunMismatchError",
    "RunPlan",
    "WorkItem",
    "attention_columns",
    "capture_relpath",
    "check_resumable",
    "command_identity",
    "load_run",
    "plan_run",
    "run_corpus",
    "stats",
]
