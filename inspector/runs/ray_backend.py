"""Running a corpus run's batches on a Ray cluster with Ray Data: long-lived model actors, same run folder.

Each worker is a Ray Data actor that loads the model once (:class:`ModelSpec`: the same model
id or folder, random-weights flag, seed and dtype as the driver's; the built-in model too) and
captures whole batches of the driver's :class:`~inspector.runs.plan.RunPlan` with
:func:`~inspector.runs.execute.capture_batch`, so it writes exactly the captures and part file
a single-process run writes, atomically, into the run folder (whose path every worker must
reach: shared storage on a real cluster). The driver holds the folder's lock, dispatches only
the batches without a part file (resume), and writes ``summary.parquet`` and ``run.json``.
A worker that dies is restarted by Ray and its batch retried (Ray Data's actor defaults:
``max_restarts=-1``, ``max_task_retries=-1``); a retried batch rewrites the same files.

A local cluster started here lives in a temporary folder ``inspector-ray-PID-*`` (PID: the driver's).
A small watcher process (this module run with ``--watch``) follows the driver through a pipe: when the
driver dies without shutting the cluster down (``kill -9``), it kills the cluster's processes still
alive (Ray's agents outlive their raylet for a minute or more otherwise) and removes the folder. The
next local cluster also removes the folders of drivers that are gone.

Ray is optional (``pip install inspector[ray]``); this module imports it only when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.runs.config import RunError

if TYPE_CHECKING:  # pragma: no cover
    from inspector._model import InspectorModel
    from inspector.runs.config import RunConfig
    from inspector.runs.plan import RunPlan

#: What to install when Ray is missing (one line, printed by ``inspector run --ray``).
RAY_INSTALL_HINT = "--ray needs Ray, which is not installed: pip install 'inspector[ray]' (or: pip install 'ray[data]')"
# A local cluster's shared-memory object store: the workers exchange only batch indices, so a small one fits.
_LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
#: A local cluster's temporary folder, in the system temp folder: ``inspector-ray-{driver pid}-{random}``.
LOCAL_TEMP_PREFIX = "inspector-ray-"
_LOCAL_TEMP = re.compile(re.escape(LOCAL_TEMP_PREFIX) + r"(?P<pid>[0-9]+)-[A-Za-z0-9_]+")
# How often the watcher lists the driver's processes (a process started and orphaned between two looks is missed).
_WATCH_INTERVAL_S = 0.5


def require_ray() -> None:
    """Raise :class:`RunError` with :data:`RAY_INSTALL_HINT` when ``ray.data`` cannot be imported (no model work)."""
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RunError(RAY_INSTALL_HINT) from exc


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the same model as the driver (everything :func:`inspector.load_model` needs).

    Attributes:
        name: hub id or local folder (every worker must reach the folder), or ``"builtin"``.
        device: device each worker loads onto (``"cpu"``, ``"cuda"``; a worker with a GPU sees it as ``cuda``).
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        random_weights: build from the config with random weights seeded by ``seed``.
        seed: seed of the random weights.
        revision: hub revision.
        builtin_sizes: sizes of the built-in model (``n_layer``, ...); ``None`` unless ``name == "builtin"``.
    """

    name: str
    device: str = "cpu"
    dtype: str = "float32"
    random_weights: bool = False
    seed: int = 0
    revision: str | None = None
    builtin_sizes: Mapping[str, int] | None = None

    @classmethod
    def from_model(cls, model: InspectorModel, model_id: str | None = None, device: str | None = None,
                   dtype: str | None = None) -> ModelSpec:
        """The spec of a loaded model (``model_id``: how it was named, default ``model.name``)."""
        from inspector._devices import dtype_name
        from inspector._fallback import BUILTIN_CONFIG, BUILTIN_NAME

        seed = int(model.info.get("seed", 0))
        common = dict(device=device or model.device.type, dtype=dtype or dtype_name(model.dtype),
                      random_weights=bool(model.random_weights), seed=seed)
        if model.info.get("builtin"):
            sizes = {k: int(model.info[k]) for k in BUILTIN_CONFIG if k in model.info}
            return cls(name=BUILTIN_NAME, builtin_sizes=sizes, **common)  # type: ignore[arg-type]
        name = model_id or model.name
        path = Path(name).expanduser()
        if path.is_dir():
            name = str(path.resolve())  # workers may start in another working directory
        return cls(name=name, revision=model.revision, **common)  # type: ignore[arg-type]

    def load(self) -> InspectorModel:
        """Load the model (in a worker)."""
        from inspector._fallback import BUILTIN_NAME, builtin_model
        from inspector._model import load_model

        if self.name == BUILTIN_NAME:
            return builtin_model(seed=self.seed, device=self.device, **dict(self.builtin_sizes or {}))
        return load_model(self.name, device=self.device, dtype=self.dtype, random_weights=self.random_weights,
                          revision=self.revision, seed=self.seed)


def model_fingerprint(model: InspectorModel) -> dict[str, Any]:
    """What must agree between the driver's model and a worker's (the device may differ)."""
    return {"name": model.name, "random_weights": bool(model.random_weights), "num_layers": model.num_layers,
            "num_heads": model.num_heads, "context_length": model.context_length, "vocab": len(model.tokenizer),
            "seed": model.info.get("seed")}


class BatchWorker:
    """A Ray Data actor: loads the model once, then captures whole batches of the plan (one index per call).

    ``before_batch`` (tests: fault injection) is called with each batch index before its capture.
    """

    def __init__(self, spec: ModelSpec, config: RunConfig, out: str, plan_ref: Any, expected: Mapping[str, Any] | None,
                 before_batch: Callable[[int], None] | None = None) -> None:
        import ray

        self.model = spec.load()
        got = model_fingerprint(self.model)
        if expected is not None and got != dict(expected):
            raise RunError(f"a Ray worker loaded a different model from the driver's ({got} != {dict(expected)}); "
                           f"every worker must reach the same model ({spec.name})")
        self.config, self.out, self.before_batch = config, Path(out), before_batch
        self.plan: RunPlan = ray.get(plan_ref)

    def __call__(self, rows: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from inspector.runs.execute import capture_batch

        batches = [int(b) for b in rows["batch"]]
        for b in batches:
            if self.before_batch is not None:
                self.before_batch(b)
            capture_batch(self.config, self.out, self.model, self.plan, b)
        return {"batch": np.asarray(batches, dtype=np.int64), "pid": np.full(len(batches), os.getpid())}


def _process_table() -> dict[int, tuple[int, str]]:
    """``pid -> (parent pid, start time)`` of every process, from /proc (empty where there is none)."""
    table = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as fh:
                    fields = fh.read().rpartition(")")[2].split()
                table[int(entry.name)] = (int(fields[1]), fields[19])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return table


def _descendants(root: int, table: Mapping[int, tuple[int, str]]) -> dict[int, str]:
    """``pid -> start time`` of every process below ``root`` in ``table``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = table[pid][1]
        todo += children.get(pid, [])
    return found


def watch_driver(driver: int, temp: str, pipe: Any = None, before: Mapping[int, str] | None = None) -> bool:
    """Follow ``driver`` (in the watcher process) until ``pipe`` (its end of the driver's pipe, default stdin)
    says ``done`` or closes; on a close without ``done`` (the driver died), kill the processes the driver
    started since the watcher did (the cluster's) still alive, and remove ``temp``. Returns whether it
    cleaned up. ``before``: ``pid -> start time`` of the driver's processes from before the cluster (left
    alone; default: those running when the watcher starts)."""
    pipe = pipe if pipe is not None else sys.stdin.buffer
    before = before if before is not None else _descendants(driver, _process_table())
    known: dict[int, str] = {}
    while True:
        known.update({pid: started for pid, started in _descendants(driver, _process_table()).items()
                      if before.get(pid) != started and pid != os.getpid()})
        ready, _, _ = select.select([pipe], [], [], _WATCH_INTERVAL_S)
        if ready:
            data = os.read(pipe.fileno(), 64)
            if data.startswith(b"done"):
                return False
            if not data:
                break
    now = _process_table()
    for pid, started in known.items():
        if pid in now and now[pid][1] == started:  # the same process, not a new one with a reused pid
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(temp, ignore_errors=True)
    return True


def _start_watcher(temp: str, package_root: str) -> subprocess.Popen[bytes] | None:
    """The watcher of this driver's local cluster in ``temp`` (``None`` where it cannot start: no cleanup)."""
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    # the processes this driver runs before the cluster starts: not the cluster's, left alone
    before = ",".join(f"{pid}:{started}" for pid, started in _descendants(os.getpid(), _process_table()).items())
    try:
        return subprocess.Popen([sys.executable, "-m", "inspector.runs.ray_backend", "--watch", str(os.getpid()), temp,
                                 before],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "PYTHONPATH": path})
    except OSError:
        return None


def _stop_watcher(watcher: subprocess.Popen[bytes] | None) -> None:
    """Tell the watcher the cluster was shut down here, and wait for it to leave."""
    if watcher is None or watcher.stdin is None:
        return
    with contextlib.suppress(OSError):
        watcher.stdin.write(b"done")
        watcher.stdin.close()
    try:
        watcher.wait(timeout=10)
    except subprocess.TimeoutExpired:
        watcher.kill()
        watcher.wait()


def remove_dead_clusters(folder: str | None = None) -> list[Path]:
    """Remove the local clusters' temporary folders (in ``folder``, default the system temp folder) whose
    driver process is gone; returns them."""
    from inspector._atomic import pid_alive

    removed = []
    root = Path(folder or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            m = _LOCAL_TEMP.fullmatch(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and not pid_alive(int(m["pid"])):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def ray_cluster(address: str = "auto", num_cpus: int | None = None) -> Iterator[bool]:
    """Connect to Ray for the duration of the block; yields whether a local cluster was started here.

    ``address="auto"`` joins a running cluster (``RAY_ADDRESS`` or one started with ``ray start``),
    else starts a local one with ``num_cpus`` CPUs, its temporary files under the system temp
    folder (removed afterwards) and workers importing this process's ``inspector``. Any other
    address (``ray://host:10001``, ``host:6379``) must reach a running cluster. An already
    initialized Ray is used as it is and left running.
    """
    import ray

    if ray.is_initialized():
        yield False
        return
    started, temp, watcher = False, None, None
    quiet = {"log_to_driver": False, "include_dashboard": False, "configure_logging": True,
             "logging_level": logging.WARNING}
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **quiet)  # type: ignore[arg-type]
            except ConnectionError:
                remove_dead_clusters()
                temp = tempfile.mkdtemp(prefix=f"{LOCAL_TEMP_PREFIX}{os.getpid()}-")
                package_root = str(Path(__file__).resolve().parents[2])
                watcher = _start_watcher(temp, package_root)
                path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
                ray.init(num_cpus=num_cpus, object_store_memory=_LOCAL_OBJECT_STORE_BYTES, _temp_dir=temp,
                         runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)  # type: ignore[arg-type]
                started = True
        else:
            try:
                ray.init(address=address, **quiet)  # type: ignore[arg-type]
            except ConnectionError as exc:
                raise RunError(f"no Ray cluster answers at {address!r} ({exc}); start one with `ray start --head` "
                               "or use --ray auto for a local one") from exc
        yield started
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        _stop_watcher(watcher)


@dataclass
class RayRunner:
    """Runs a corpus run's batches on Ray workers (a :class:`~inspector.runs.execute.BatchRunner`).

    Attributes:
        spec: how each worker loads the model.
        address: ``"auto"`` (a running cluster, else a local one) or a cluster address.
        workers: number of model actors.
        gpus_per_worker: GPUs each actor reserves (0: CPU workers; fractions share a GPU).
        cpus_per_worker: CPUs each actor reserves.
        before_batch: called in the worker with each batch index before its capture (tests).
    """

    spec: ModelSpec
    address: str = "auto"
    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    before_batch: Callable[[int], None] | None = None
    #: the driver model's :func:`model_fingerprint`; every worker's model must agree (``None``: not checked).
    expected: Mapping[str, Any] | None = None
    #: filled by :meth:`__call__`: the worker process id of each batch it ran (diagnostics, tests).
    pids: dict[int, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.gpus_per_worker < 0 or self.cpus_per_worker <= 0:
            raise ValueError(f"gpus_per_worker must be >= 0 and cpus_per_worker > 0, got {self.gpus_per_worker} "
                             f"and {self.cpus_per_worker}")

    @property
    def device(self) -> str | None:
        return self.spec.device

    @property
    def dtype(self) -> str | None:
        return self.spec.dtype

    @classmethod
    def for_model(cls, model: InspectorModel, model_id: str | None = None, device: str | None = None,
                  dtype: str | None = None, **options: Any) -> RayRunner:
        """A runner whose workers load the same model as ``model`` (on ``device``, default ``model``'s)."""
        return cls(ModelSpec.from_model(model, model_id, device, dtype), expected=model_fingerprint(model), **options)

    def __call__(self, config: RunConfig, out: Path, plan: RunPlan, todo: list[int],
                 finished: Callable[[int], None]) -> None:
        """Dispatch ``todo`` to the workers; ``finished(b)`` runs here as each batch's part file is written."""
        if not todo:
            return
        require_ray()
        import ray
        import ray.data

        from inspector.runs.folder import part_path, remove_stale_temporaries

        local_cpus = max(1, int(round(self.workers * self.cpus_per_worker)))
        with ray_cluster(self.address, num_cpus=local_cpus):
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False  # the driver shows its own turn bar
            ctx.print_on_execution_start = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            kwargs = dict(spec=self.spec, config=config, out=str(Path(out).resolve()), plan_ref=ray.put(plan),
                          expected=self.expected, before_batch=self.before_batch)
            resources: dict[str, Any] = {"num_cpus": self.cpus_per_worker}
            if self.gpus_per_worker > 0:
                resources["num_gpus"] = self.gpus_per_worker
            items = ray.data.from_items([{"batch": b} for b in todo], override_num_blocks=len(todo))
            # one batch in flight per actor: a batch is seconds of work, so idle actors take the next one
            pool = ray.data.ActorPoolStrategy(size=self.workers, max_tasks_in_flight_per_actor=1)
            ds = items.map_batches(BatchWorker, batch_size=1, compute=pool, fn_constructor_kwargs=kwargs, **resources)
            try:
                for row in ds.iter_rows():
                    b = int(row["batch"])
                    self.pids[b] = int(row["pid"])
                    finished(b)
            except Exception as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, (RunError, ValueError, OSError)):
                    raise cause from exc  # the worker's own message, not Ray's wrapper
                raise
        missing = [b for b in todo if not part_path(out, b).is_file()]
        if missing:
            raise RunError(f"Ray finished without writing batches {missing[:10]} to {out}; rerun the same command")
        remove_stale_temporaries(out)  # a killed worker's half-written file; every worker is gone now


if __name__ == "__main__":  # the watcher: python -m inspector.runs.ray_backend --watch DRIVER_PID TEMP PID:START,...
    if len(sys.argv) != 5 or sys.argv[1] != "--watch":
        sys.exit("usage: python -m inspector.runs.ray_backend --watch DRIVER_PID TEMP_FOLDER PID:START,...")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the driver's terminal is the driver's to handle
    earlier = dict(item.split(":", 1) for item in sys.argv[4].split(",") if item)
    watch_driver(int(sys.argv[2]), sys.argv[3], before={int(pid): started for pid, started in earlier.items()})
