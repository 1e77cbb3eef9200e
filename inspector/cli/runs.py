"""``inspector run`` (a resumable corpus run over DailyDialog) and ``inspector stats`` (its summary by label)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.cli.capture import add_generation_args, add_model_args, load_model_from_args, settings_from_args
from inspector.data.prompts import DEFAULT_CONTEXT_TURNS, DEFAULT_TEMPLATE, TEMPLATE_NAMES
from inspector.data.schema import LABEL_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from inspector.runs.config import RunConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from inspector.runs.config import ATTENTION_MODES, CONDITIONS

    p = sub.add_parser(
        "run",
        help="capture across many DailyDialog turns (batched, resumable) and write a summary table",
        description=(
            "Generate the reply to every selected DailyDialog turn with capture, in batches, into a run folder: "
            "one capture per turn (captures/DDDDD-TTT.safetensors), summary.parquet (one row per turn) and "
            "run.json. Killed at any moment, the same command resumes it; a different command against the "
            "same folder is refused."
        ),
    )
    g = p.add_argument_group("data")
    g.add_argument("--split", default="validation", help="DailyDialog split (default: %(default)s)")
    g.add_argument(
        "--data",
        default=None,
        help="DailyDialog folder (original release layout) or Parquet/CSV/JSONL file or folder, or 'hub' "
        "(default: $INSPECTOR_DAILYDIALOG_DIR, else ../shared/data/dailydialog beside this folder or the "
        "project, else the Hugging Face Hub)",
    )
    g.add_argument(
        "--filter",
        dest="filters",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep matching turns (repeatable): act=question, emotion=anger,sadness, response_act=..., "
        "response_emotion=..., dial_id=1,4,10-12, turn=0, text=bank, response_text=..., has_response=yes "
        "(default: every turn)",
    )
    g.add_argument("--limit", type=int, default=None, help="only the first N selected turns (default: all)")
    add_model_args(p)
    add_generation_args(p, max_new_tokens=40, truncate=False, selection=False)
    g = p.add_argument_group("prompts")
    g.add_argument("--context-turns", type=int, default=DEFAULT_CONTEXT_TURNS,
                   help="dialogue turns shown before the reply cue (default: %(default)s; 1 = the notebook's prompt)")
    g.add_argument("--template", default=DEFAULT_TEMPLATE, metavar="|".join(TEMPLATE_NAMES),
                   help="prompt form: chat (the tokenizer's chat template: turns as user/assistant messages), "
                   "notebook ('{role}: {text} \\n' lines), plain ('{role}: {text}\\n'), a line format "
                   "containing {text}, or auto: chat where the tokenizer has a chat template, else notebook "
                   "(default: %(default)s)")
    g.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="prompt token budget; turns are dropped from the left to fit "
                   "(default: context length minus --max-new-tokens)")
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, help="run folder, e.g. out/runs/NAME")
    g.add_argument("--batch-size", type=int, default=16, help="prompts generated together (default: %(default)s)")
    g.add_argument("--attention", choices=list(ATTENTION_MODES), default="summary",
                   help="attention kept per turn: full [layer, head, seq, seq]; summary: mean over heads "
                   "(default); none: no attention (attention columns are NaN)")
    g.add_argument("--no-captures", dest="keep_captures", action="store_false",
                   help="write only the summary, no capture files")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    g = p.add_argument_group("research")
    g.add_argument("--score-reference", action="store_true",
                   help="also score each turn's reference reply by teacher forcing: columns ref_nll, ref_nll_mean, "
                        "ref_ppl, ref_tokens (one extra forward pass per batch; default: off)")
    g.add_argument("--condition", choices=list(CONDITIONS), default="none",
                   help="state the reference reply's emotion or act in the cue of the generation prompt, e.g. "
                        "'Agent (happiness):' (chat prompts: at the end of the last user message, \"(The reply's "
                        "emotion: happiness)\"), and add the columns cond_delta_loglik(_mean), cond_kl_mean, "
                        "cond_kl_max, attn_condition; implies --score-reference (default: %(default)s)")
    g.add_argument("--condition-style", choices=["paren", "bracket"], default="paren",
                   help="how the condition is written: paren 'Agent (happiness):' or bracket 'Agent [inform]:' "
                        "(default: %(default)s)")
    add_ray_args(p)
    p.set_defaults(func=run_run)

    s = sub.add_parser(
        "stats",
        help="a run's summary by label: count, mean entropy, chosen-token probability, attention shares",
        description="Group a run's summary.parquet by a label and print count and means; optionally write CSV.",
    )
    s.add_argument("run", help="run folder (e.g. out/runs/NAME)")
    s.add_argument("--by", default=LABEL_COLUMNS[0], choices=list(LABEL_COLUMNS),
                   help="label column to group by (default: %(default)s)")
    s.add_argument("--csv", default=None, help="also write the table to this CSV file (default: print only)")
    s.set_defaults(func=run_stats)


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    """``--ray [auto|ADDRESS]``, ``--workers N``, ``--gpus-per-worker G`` (needs the ``ray`` extra)."""
    g = parser.add_argument_group("Ray (pip install 'inspector[ray]')")
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="auto|ADDRESS",
                   help="run the batches on a Ray cluster with Ray Data: 'auto' (the value when given alone) joins "
                   "the running cluster or starts a local one; ADDRESS (ray://host:10001, host:6379) joins that "
                   "cluster, whose workers must all reach --out, --model and --data at the same paths "
                   "(default: no Ray, one process)")
    g.add_argument("--workers", type=int, default=None,
                   help="model actors, each loading the model once (default: 2; needs --ray)")
    g.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs each worker reserves; > 0 runs the workers on cuda (default: 0, CPU workers; "
                   "needs --ray)")


def _ray_runner_options(args: argparse.Namespace) -> dict[str, object] | None:
    """The Ray options, checked before any model work (``None`` without ``--ray``)."""
    from inspector.runs.ray_backend import require_ray

    if args.ray is None:
        if args.workers is not None or args.gpus_per_worker is not None:
            raise ValueError("--workers and --gpus-per-worker need --ray (e.g. --ray auto)")
        return None
    require_ray()
    workers = 2 if args.workers is None else args.workers
    gpus = 0.0 if args.gpus_per_worker is None else args.gpus_per_worker
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if gpus < 0:
        raise ValueError(f"--gpus-per-worker must be >= 0, got {gpus}")
    if gpus > 0 and args.device not in ("auto", "cuda"):
        raise ValueError(f"--gpus-per-worker {gpus} runs the workers on cuda; drop --device {args.device}")
    return {"address": args.ray, "workers": workers, "gpus_per_worker": gpus}


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    from inspector.data.filters import parse_filters
    from inspector.runs.config import RunConfig

    settings = settings_from_args(args, truncate_prompt=False, keep_attention=args.attention != "none")
    return RunConfig(
        split=args.split,
        data=args.data,
        filters=parse_filters(args.filters),
        limit=args.limit,
        batch_size=args.batch_size,
        context_turns=args.context_turns,
        template=args.template,
        max_prompt_tokens=args.max_prompt_tokens,
        attention=args.attention,
        keep_captures=args.keep_captures,
        settings=settings,
        score_reference=args.score_reference,
        condition=args.condition,
        condition_style=args.condition_style,
    )


def _selected_turns(config: RunConfig) -> tuple[Any, int]:
    """The dataset and how many turns the run selects: data, split and filter errors before any model load."""
    from inspector.data.dailydialog import load_dailydialog
    from inspector.data.filters import filter_turns
    from inspector.runs.config import RunError

    dataset = load_dailydialog(config.split, config.data)
    table = filter_turns(dataset.turns(), **dict(config.filters))
    if config.limit is not None:
        table = table.head(config.limit)
    if table.empty:
        raise RunError(f"no DailyDialog {config.split} turns match the filters {dict(config.filters)}")
    return dataset, len(table)


def _same_template(template: str, stored: dict[str, Any]) -> bool:
    """Whether ``template`` surely gives the stored run's prompts before the tokenizer is loaded: ``auto`` does
    only where the run was also started with ``auto`` (the same model resolves it the same way)."""
    from inspector.data.chat import AUTO

    return template != AUTO or (stored.get("template") or {}).get("requested") == AUTO


def run_run(args: argparse.Namespace) -> int:
    from torch import device as torch_device

    from inspector._devices import dtype_name, resolve_device, resolve_dtype
    from inspector.runs.execute import run_corpus
    from inspector.runs.folder import check_resumable, command_identity
    from inspector.runs.plan import plan_run
    from inspector.runs.summary import missing_files

    # Validate first, load last: settings, the folder, the data and the filters before the model (~10 s).
    config = _config_from_args(args)
    ray_options = _ray_runner_options(args)
    gpu_workers = ray_options is not None and float(ray_options["gpus_per_worker"]) > 0  # type: ignore[arg-type]
    device = torch_device("cuda") if gpu_workers else resolve_device(args.device)
    dtype = dtype_name(resolve_dtype(args.dtype, device))
    before = check_resumable(args.out, command_identity(config, args.model, args.random_weights, device.type, dtype))
    dataset, num_turns = _selected_turns(config)
    stored = (before.get("identity") or {}) if before is not None else {}
    if (before is not None and before.get("status") == "complete" and stored.get("num_turns") == num_turns
            and _same_template(config.template, stored) and not missing_files(Path(args.out), before)):
        print(f"{args.out} is already complete ({num_turns} turns); nothing to generate or write", file=sys.stderr)
        return 0
    if gpu_workers:  # the driver only plans (tokenizer, sizes): keep the GPUs for the workers
        from inspector._model import load_model

        model = load_model(args.model, device="cpu", random_weights=args.random_weights)
    else:
        model = load_model_from_args(args)
    print(f"loaded {model.describe()}", file=sys.stderr)
    plan = plan_run(config, model.tokenizer, model.context_length, dataset=dataset)
    runner = None
    if ray_options is not None:
        from inspector.runs.ray_backend import RayRunner

        runner = RayRunner.for_model(model, args.model, device=device.type, dtype=dtype, **ray_options)
    run = run_corpus(config, args.out, model, model_id=args.model, progress=args.progress, command=sys.argv,
                     plan=plan, runner=runner)
    if before is not None and before.get("status") == "complete" and run.settings == before:
        return 0  # already complete: run_corpus said so and wrote nothing
    counts = run.settings.get("counts") or {}
    print(f"wrote {run.path}: {counts.get('turns', len(run.summary))} turns in summary.parquet "
          f"({run.settings.get('total_seconds', 0.0):.1f} s of generation)")
    return 0


def stats_legend(table: Any, by: str) -> str:
    """The lines under ``inspector stats``' table: what each column is, in which unit, and the ``(none)`` row."""
    from inspector.data.schema import NO_LABEL
    from inspector.runs.stats import STATS_UNITS

    lines = ["", "count: turns in the group; the other columns are means over its turns:"]
    lines += [f"  {c}: {STATS_UNITS[c]}" for c in table.columns if c in STATS_UNITS]
    if NO_LABEL in table.index:
        lines.append(f"{NO_LABEL}: turns without a {by} label (a dialogue's last turn has no reply to label)")
    return "\n".join(lines)


def run_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from inspector._formatting import format_value
    from inspector._report import RANDOM_WEIGHTS_BANNER
    from inspector.runs.load import load_run
    from inspector.runs.stats import used_random_weights
    from inspector.runs.summary import describe_missing

    run = load_run(args.run)
    table = run.stats(args.by)
    if run.missing:
        print(f"note: {run.path} lacks {describe_missing(run.missing)}; rerun the command that made it to redo "
              f"them ({len(run.summary)} turns shown)", file=sys.stderr)
    elif not run.complete:
        print(f"note: {run.path} is not finished; {len(run.summary)} turns so far", file=sys.stderr)
    if used_random_weights(run.settings):
        print(RANDOM_WEIGHTS_BANNER)
    # Significant digits, not fixed decimals: with random weights probabilities are ~2e-05, not 0.0000.
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.float_format", format_value):
        print(table.to_string())
    print(stats_legend(table, args.by))
    if args.csv:
        from inspector._atomic import atomic_path
        from inspector.runs.folder import writing

        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)  # --csv tables/new/x.csv needs no mkdir first
        with writing(Path(args.csv)), atomic_path(args.csv) as tmp:
            table.to_csv(tmp)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0
