"""Corpus-run throughput against plain batched ``generate``; the cost of research columns and head statistics.

64 DailyDialog validation turns, full-size GPT-2 with random weights, batch 16, 32 new
tokens. In one process, alternating ``--repeats`` times:

* **plain**: Hugging Face ``model.generate`` on the run's batches (same prompts, same
  left-padded batch composition), greedy, KV cache on, eager attention, nothing captured;
* **corpus**: :func:`inspector.runs.run_corpus` into a fresh folder: capture with
  attention, per-turn metrics, one capture file per turn, summary parts, summary.parquet
  and run.json written to disk.

Both use the same prompt plan (built once, outside the timings). The two paths are
interleaved batch by batch, so a shared machine's changing load hits both alike. Reports
turns/s of each (total over the repeats) and their ratio; the target on CPU is at least 0.85.
Also reported: the median, over every batch, of plain/corpus time for that batch run back
to back (robust to load spikes that hit one path only).

With ``--mode research`` it times instead a corpus run with reference scoring and
conditioning (``score_reference=True, condition="emotion"``: two extra teacher-forced passes per
batch, the conditioned prompt generated) against the same run without them, over the same turns, in
one process: whole runs alternate ABBA over ``--repeats`` (A first on even repeats, B first on odd
ones). Reports the seconds of each and their ratio; the target is at most 1.5.

With ``--mode head-stats`` it times the same way a run as it is, computing and storing
each turn's head statistics, against the same run with them switched off; the target is at most 1.05.

    python benchmarks/bench_corpus.py [--device cpu] [--mode plain|research|head-stats] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_model_args, load_bench_model  # noqa: E402


def _default_dir(env: str, rel: str) -> str | None:
    value = os.environ.get(env)
    if value:
        return value
    path = ROOT.parent / "shared" / rel
    return str(path) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--data", default=_default_dir("INSPECTOR_DAILYDIALOG_DIR", "data/dailydialog"),
                    help="DailyDialog folder (default: $INSPECTOR_DAILYDIALOG_DIR or ../shared/data/dailydialog)")
    ap.add_argument("--turns", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--attention", default="summary", choices=["full", "summary", "none"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes of each (default: %(default)s)")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the result to this file")
    ap.add_argument("--mode", default="plain", choices=["plain", "research", "head-stats"],
                    help="plain: corpus run vs plain generate; research: a run with reference scoring and "
                         "conditioning vs one without; head-stats: a run with per-turn head statistics vs one "
                         "without (default: %(default)s)")
    ap.add_argument("--ray-workers", default=None, metavar="1,2",
                    help="instead: corpus-run throughput on a local Ray cluster with each of these worker counts, "
                    "interleaved (needs inspector[ray]; default: off)")
    ap.add_argument("--batching", action="store_true",
                    help="instead: capture throughput of length-bucketed (the plan's) vs unsorted batches, "
                    "interleaved (default: off)")
    args = ap.parse_args(argv)
    if not args.data:
        print("need --data (DailyDialog)", file=sys.stderr)
        return 2
    if args.mode == "research":
        return research_mode(args)
    if args.mode == "head-stats":
        return head_stats_mode(args)
    if args.ray_workers or args.batching:
        from _corpus_ray import bench_batching, bench_ray_workers

        result = bench_ray_workers(args) if args.ray_workers else bench_batching(args)
        print(json.dumps(result))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return 0

    import torch

    from inspector._capture.settings import GenerationSettings
    from inspector.runs import RunConfig, plan_run, run_corpus

    im = load_bench_model(args.model, args.device, args.weights)
    tok, model = im.tokenizer, im.model
    cfg = RunConfig(split="validation", data=args.data, limit=args.turns, batch_size=args.batch_size,
                    attention=args.attention, settings=GenerationSettings(max_new_tokens=args.max_new_tokens))
    plan = plan_run(cfg, tok, im.context_length)
    batches = [[it.prompt.text for it in batch] for batch in plan.batches]
    n_turns = len(plan.items)

    def sync() -> None:
        if im.device.type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def plain_batch(b: int, max_new_tokens: int = args.max_new_tokens) -> None:
        enc = tok(batches[b], return_tensors="pt", padding=True, add_special_tokens=False).to(im.device)
        model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                       pad_token_id=tok.pad_token_id, eos_token_id=model.config.eos_token_id)
        sync()

    tmp = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    try:
        # warm-up: one small batch through each path
        plain_batch(0, 2)
        im.generate(batches[0], max_new_tokens=2)
        times: dict[str, list[float]] = {"plain": [], "corpus": []}
        nb = len(batches)
        pair_ratios: list[float] = []  # plain / corpus time of the same batch, run back to back
        for r in range(args.repeats):
            # Interleaved batch by batch (P0 C0 P1 C1 ... on even repeats, C0 P0 C1 P1 ... on odd ones),
            # so both paths see the same machine load; the plain batches run from the corpus run's
            # per-batch callback and their time is taken out of the corpus run's wall time.
            spent = {"plain": 0.0}
            plain_b: dict[int, float] = {}
            corpus_b: dict[int, float] = {}
            mark: dict[str, float] = {"t": 0.0}

            def timed_plain(b: int, plain_b: dict[int, float] = plain_b, spent: dict[str, float] = spent) -> None:
                t = time.perf_counter()
                plain_batch(b)
                plain_b[b] = time.perf_counter() - t
                spent["plain"] += plain_b[b]

            def after_batch(b: int, r: int = r, corpus_b: dict[int, float] = corpus_b,
                            mark: dict[str, float] = mark) -> None:
                now = time.perf_counter()
                corpus_b[b] = now - mark["t"]
                nxt = b + 1 if r % 2 == 0 else b
                if nxt < nb:
                    timed_plain(nxt)
                mark["t"] = time.perf_counter()

            before = 0.0
            if r % 2 == 0:
                timed_plain(0)
                before = spent["plain"]
            t0 = time.perf_counter()
            mark["t"] = t0
            run = run_corpus(cfg, tmp / f"run-{r}", im, progress=False, plan=plan, log=lambda m: None,
                             on_batch=after_batch)
            sync()
            wall = time.perf_counter() - t0
            assert len(run.summary) == n_turns
            pair_ratios += [plain_b[b] / corpus_b[b] for b in range(nb)]
            times["plain"].append(spent["plain"])
            times["corpus"].append(wall - (spent["plain"] - before))
            print(f"repeat {r}: plain {times['plain'][-1]:.2f} s, corpus {times['corpus'][-1]:.2f} s",
                  file=sys.stderr, flush=True)
        disk = sum(p.stat().st_size for p in (tmp / "run-0").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    plain_tps = n_turns * args.repeats / sum(times["plain"])
    corpus_tps = n_turns * args.repeats / sum(times["corpus"])
    per_repeat = [round(p / c, 3) for p, c in zip(times["plain"], times["corpus"], strict=True)]
    result = {
        "benchmark": "bench_corpus",
        "device": str(im.device),
        "torch_threads": torch.get_num_threads(),
        "model": im.name,
        "random_weights": im.random_weights,
        "turns": n_turns,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "attention": args.attention,
        "repeats": args.repeats,
        "plain_seconds": times["plain"],
        "corpus_seconds": times["corpus"],
        "plain_turns_per_s": round(plain_tps, 3),
        "corpus_turns_per_s": round(corpus_tps, 3),
        "ratio": round(corpus_tps / plain_tps, 3),
        "ratio_per_repeat": per_repeat,
        "ratio_median_of_batch_pairs": round(statistics.median(pair_ratios), 3),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "target_ratio": 0.85,
        "run_folder_bytes": disk,
    }
    print(f"plain generate : {plain_tps:7.2f} turns/s")
    print(f"corpus run     : {corpus_tps:7.2f} turns/s (captures, summary and run.json written)")
    print(f"ratio          : {result['ratio']:.3f} (target >= 0.85); median over back-to-back batch pairs: "
          f"{result['ratio_median_of_batch_pairs']:.3f}")
    print(json.dumps(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def research_mode(args: argparse.Namespace) -> int:
    """A run with ``score_reference`` and ``condition="emotion"`` against the same run without, ABBA."""
    return _abba(args, "research", "run with reference + emotion", 1.5,
                 {"score_reference": True, "condition": "emotion"}, head_stats_off=False)


def head_stats_mode(args: argparse.Namespace) -> int:
    """A run as it is (per-turn head statistics computed and stored) against the same run without them, ABBA."""
    return _abba(args, "head-stats", "run with head statistics", 1.05, {}, head_stats_off=True)


def _abba(args: argparse.Namespace, mode: str, label: str, target: float, extra: dict[str, object],
          head_stats_off: bool) -> int:
    """Whole runs "base" and ``mode`` alternate ABBA over ``--repeats`` in this process; reports their time ratio.

    ``extra`` holds the :class:`RunConfig` fields of the ``mode`` run. With ``head_stats_off`` the
    base run skips the per-turn head statistics (the module function is swapped for one that
    returns ``None``, as for a run that kept no attention), everything else equal.
    """
    import torch

    import inspector.runs.execute as execute
    from inspector._capture.settings import GenerationSettings
    from inspector.runs import RunConfig, plan_run, run_corpus

    im = load_bench_model(args.model, args.device, args.weights)
    common = dict(split="validation", data=args.data, limit=args.turns, batch_size=args.batch_size,
                  attention=args.attention, settings=GenerationSettings(max_new_tokens=args.max_new_tokens))
    configs = {"base": RunConfig(**common), mode: RunConfig(**extra, **common)}  # type: ignore[arg-type]
    plans = {k: plan_run(c, im.tokenizer, im.context_length) for k, c in configs.items()}
    n_turns = len(plans["base"].items)
    times: dict[str, list[float]] = {"base": [], mode: []}
    scored = 0
    real_head_stats = execute.turn_head_stats
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-"))
    try:
        im.generate(plans["base"].batches[0][0].prompt.text, max_new_tokens=2)  # warm-up
        for r in range(args.repeats):
            for name in (("base", mode) if r % 2 == 0 else (mode, "base")):
                off = head_stats_off and name == "base"
                execute.turn_head_stats = (lambda cap: None) if off else real_head_stats  # type: ignore[assignment]
                t0 = time.perf_counter()
                run = run_corpus(configs[name], tmp / f"{name}-{r}", im, progress=False, plan=plans[name],
                                 log=lambda m: None)
                if im.device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
                assert len(run.summary) == n_turns
                has_stats = any((tmp / f"{name}-{r}" / "parts").glob("headstats-*"))
                assert has_stats != off or args.attention == "none", "head statistics were not switched as asked"
                if name == mode and "ref_ppl" in run.summary:
                    scored = int(run.summary["ref_ppl"].notna().sum())
            print(f"repeat {r}: base {times['base'][-1]:.2f} s, {mode} {times[mode][-1]:.2f} s",
                  file=sys.stderr, flush=True)
    finally:
        execute.turn_head_stats = real_head_stats  # type: ignore[assignment]
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = sum(times[mode]) / sum(times["base"])
    result = {
        "benchmark": "bench_corpus", "mode": mode, "device": str(im.device),
        "torch_threads": torch.get_num_threads(), "model": im.name, "random_weights": im.random_weights,
        "turns": n_turns,
        "turns_with_reference": scored, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "attention": args.attention, "repeats": args.repeats, "base_seconds": times["base"],
        f"{mode}_seconds": times[mode], "ratio": round(ratio, 3),
        "ratio_per_repeat": [round(b / a, 3) for a, b in zip(times["base"], times[mode], strict=True)],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "target_ratio": target,
    }
    print(f"{'run without':29s}: {sum(times['base']):7.2f} s over {args.repeats} repeats")
    print(f"{label:29s}: {sum(times[mode]):7.2f} s")
    print(f"{'ratio':29s}: {ratio:.3f} (target <= {target})")
    print(json.dumps(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
