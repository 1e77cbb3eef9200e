"""Shared benchmark helpers: model and prompt setup, timing, peak-memory sampling."""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def gpt2_offline_dir() -> Path:
    from inspector._locations import find_gpt2_offline_dir, gpt2_offline_dirs

    path = find_gpt2_offline_dir()
    if path is None:
        raise SystemExit(
            f"GPT-2 config/tokenizer folder not found (looked in {', '.join(map(str, gpt2_offline_dirs()))}); "
            "set INSPECTOR_GPT2_OFFLINE_DIR (see ../shared/README.md)"
        )
    return path


#: Weight files whose presence makes a model folder "pretrained" for :func:`load_bench_model`'s ``auto``.
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def load_bench_model(name: str | None, device: str = "cpu", weights: str = "auto") -> Any:
    """The benchmarked model: ``name`` (default: GPT-2's offline config folder) with ``weights`` ``"random"``,
    ``"pretrained"``, or ``"auto"``: random for a folder holding no weights (GPT-2's offline config),
    pretrained otherwise (a hub id, ``smollm2``, a ``.gguf`` file, a folder with weights)."""
    import inspector

    model = name or str(gpt2_offline_dir())
    folder = Path(model).expanduser()
    no_weights = folder.is_dir() and not any((folder / f).is_file() for f in _WEIGHT_FILES)
    random = weights == "random" or (weights == "auto" and no_weights)
    return inspector.load_model(model, device=device, random_weights=random)


def add_model_args(parser: Any) -> None:
    """``--model`` and ``--weights``, the same in every benchmark."""
    parser.add_argument("--model", default=None,
                        help="hub id, folder, .gguf file or smollm2 (default: GPT-2's offline config folder, "
                             "random weights)")
    parser.add_argument("--weights", default="auto", choices=["auto", "random", "pretrained"],
                        help="auto: random for a folder without weights, else pretrained (default: %(default)s)")


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return 0


class PeakMemory:
    """Samples RSS (and CUDA's allocator peak) while a block runs; ``.peak_above_start`` in bytes."""

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device = device
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = rss_bytes()
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak = max(self.peak, rss_bytes())

    @property
    def peak_above_start(self) -> int:
        return self.peak - self.start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":  # pragma: no cover
        torch.mps.synchronize()


def timed(fn: Callable[[], Any], device: torch.device, memory: bool = True) -> tuple[float, Any, int]:
    """(seconds, result, peak bytes above start) of one call.

    ``memory=False``: no sampling thread (on the CPU it wakes every 2 ms and takes the GIL, which adds
    noise to the time); the peak is then reported as 0.
    """
    sync(device)
    if not memory:
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        return time.perf_counter() - t0, result, 0
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        seconds = time.perf_counter() - t0
    return seconds, result, mem.peak_above_start


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: str | None, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2)
    print("JSON:", json.dumps(data))
    if path:
        from inspector._atomic import write_text_atomic

        write_text_atomic(path, text)


def time_jobs(
    jobs: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds of each job, ``repeats`` rounds, the jobs alternating within a round (side by side)."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    cpu: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            job()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return times, cpu
