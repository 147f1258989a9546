"""The kernel-NC1 sweep of Kothapalli & Tirer on Gaussian data (definitions §3).

For every sample size N, input dimension d0 and draw, one data set is drawn from D1 (or
its unbalanced / rescaled variants) and every *series* is measured on that same draw:

    data              nc1_trace of the inputs themselves
    nngp-<act>        NNGP of the hidden layer (Kact)
    ntk-<act>         NTK (Theta)
    adaptive-<act>    adaptive kernel Q(Sigma) of the equations of state
    network-<act>     hidden features of a trained two-layer network

``run_sweep`` returns (and checkpoints after every finished task) a JSON-ready dict of
every value; ``summarize`` reduces it to mean +- std of log10 NC1 per (series, N, d0),
and ``plot_sweep`` draws the figures. Tasks run in worker processes, one thread each.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nclab.core.errors import NCInputError
from nclab.core.io import write_json
from nclab.core.validation import check_memory, check_scalar, positive_number
from nclab.kernels import torch_threads
from nclab.kernels.adaptive import DEFAULT_SIGMA_A, adaptive_kernel
from nclab.kernels.closed_form import ACTIVATIONS, two_layer_kernels
from nclab.kernels.data import d1
from nclab.kernels.nc1 import feature_nc1, kernel_nc1
from nclab.kernels.network import train_network

METHODS = ("nngp", "ntk", "adaptive", "network")
DEFAULT_SERIES = ("nngp-erf", "ntk-erf", "nngp-relu", "ntk-relu", "adaptive-erf", "network-erf")
FORMAT_VERSION = 1
#: Float64 N x N matrices a task holds at once, at the most: the NNGP and NTK Gram
#: matrices of each activation stay until the task ends (2 each); measuring NC1 of one
#: adds a temporary (1); solving the adaptive kernel adds Q, its Cholesky factor and
#: inverse and the gradient's weights (4). Peak RSS of one task (``ru_maxrss``) grew by
#: 4.6 N^2 (nngp-erf), 8.3 N^2 (nngp-erf, ntk-relu), 4.2 N^2 (adaptive-erf) and 7.2 N^2
#: (the default series) from N = 1024 to 2048, where the row blocks below are whole.
GRAMS_PER_ACTIVATION, NC1_GRAMS, ADAPTIVE_GRAMS = 2, 1, 4
#: Vectors of (d0 + 1)^2 entries that Newton-Krylov (lgmres, 30 inner iterations) keeps.
KRYLOV_VECTORS = 50
#: float32 N x width arrays of the trained network (activations, gradients, the features
#: measured): 124 MB measured for N = 1024, width 2048, about 15 arrays.
NETWORK_ARRAYS = 16
#: What a worker process holds before its first task (Python, torch, scipy): about
#: 220 MiB measured with ``ru_maxrss``.
WORKER_BYTES = 256 * 2**20
#: Temporaries that do not grow with N (row blocks of the Gram matrices, about 32 MiB each).
FIXED_BYTES = 128 * 2**20
#: Seconds between two looks of a worker at its parent (where the kernel cannot tell it).
PARENT_POLL_S = 1.0


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines a sweep's numbers.

    Attributes
    ----------
    sizes, dims : tuple of int
        The N and d0 values.
    draws : int
        Data sets per (N, d0).
    series : tuple of str
        ``<method>-<activation>`` with method in ``METHODS``.
    mean, std : float
        D1's class means +-mean*1 and within-class std (2 and 0.5 in the definitions).
    imbalance : float
        n_0 / n_1 (1 = balanced).
    sigma_w, sigma_b : float
        Scales of the NNGP / NTK / network.
    adaptive_width, sigma_a, noise : float
        Width h, read-out scale and sigma^2 of the adaptive kernel.
    network_width, lr, steps, weight_decay : training of the two-layer network.
    seed : int
    """

    sizes: tuple[int, ...] = (128, 256, 512, 1024)
    dims: tuple[int, ...] = (1, 2, 8, 32, 128)
    draws: int = 10
    series: tuple[str, ...] = DEFAULT_SERIES
    mean: float = 2.0
    std: float = 0.5
    imbalance: float = 1.0
    sigma_w: float = 1.0
    sigma_b: float = 0.0
    adaptive_width: float = 500.0
    sigma_a: float = DEFAULT_SIGMA_A
    noise: float = 1e-6
    network_width: int = 500
    lr: float = 1.0
    steps: int = 500
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sizes or not self.dims:
            raise NCInputError("need at least one N and one d0")
        for size in self.sizes:
            check_scalar(size, "N", int, min_val=4)
        for dim in self.dims:
            check_scalar(dim, "d0", int, min_val=1)
        for name in ("draws", "network_width", "steps"):
            check_scalar(getattr(self, name), name, int, min_val=1)
        check_scalar(self.seed, "seed", int, min_val=0)
        if not self.series:
            raise NCInputError("no series to compute")
        for name in ("std", "sigma_b", "weight_decay"):
            positive_number(getattr(self, name), name, allow_zero=True)
        for name in ("imbalance", "sigma_w", "adaptive_width", "sigma_a", "noise", "lr"):
            positive_number(getattr(self, name), name)
        if check_scalar(self.mean, "mean", float) == 0:
            raise NCInputError("mean must be != 0: the two classes of D1 would coincide")
        for name in self.series:
            split_series(name)
        for size in self.sizes:
            self.class_sizes(size)

    def class_sizes(self, n: int) -> tuple[int, int]:
        """(n_0, n_1) with n_0 / n_1 as close to ``imbalance`` as integers allow."""
        n1 = int(round(n / (1 + self.imbalance)))
        if n1 < 2 or n - n1 < 2:
            raise NCInputError(f"N={n} with imbalance {self.imbalance} leaves a class with "
                               "fewer than 2 samples")
        return n - n1, n1

    def tasks(self) -> list[tuple[int, int, int]]:
        """(N, d0, draw) in the order they are run: largest first, for load balance."""
        return [(n, d, k) for n in sorted(self.sizes, reverse=True)
                for d in sorted(self.dims, reverse=True) for k in range(self.draws)]


def split_series(name: str) -> tuple[str, str]:
    """'adaptive-erf' -> ('adaptive', 'erf'), checked."""
    method, _, activation = name.partition("-")
    if method not in METHODS or activation not in ACTIVATIONS:
        raise NCInputError(f"unknown series '{name}': use <method>-<activation> with method in "
                           f"{', '.join(METHODS)} and activation in {', '.join(ACTIVATIONS)}")
    return method, activation


def task_key(n: int, d0: int, draw: int) -> str:
    return f"N={n},d0={d0},draw={draw}"


def task_bytes(config: SweepConfig, n: int, d0: int) -> int:
    """Peak memory of one task (N, d0), in bytes: the N x N matrices of its series, the
    adaptive kernel's Krylov vectors, the trained network's arrays and the data."""
    methods = {split_series(name) for name in config.series}
    activations = {activation for method, activation in methods if method in ("nngp", "ntk")}
    grams = NC1_GRAMS + GRAMS_PER_ACTIVATION * len(activations)
    floats = n * d0
    if any(method == "adaptive" for method, _ in methods):
        grams += ADAPTIVE_GRAMS
        floats += KRYLOV_VECTORS * (d0 + 1) ** 2
    if any(method == "network" for method, _ in methods):
        floats += (NETWORK_ARRAYS * n * config.network_width + 4 * config.network_width * d0) // 2
    return 8 * (grams * n * n + floats) + FIXED_BYTES


def check_sweep_memory(config: SweepConfig, workers: int) -> None:
    """Refuse, in one line, a sweep whose largest tasks, run ``workers`` at a time, need
    more memory than the host has free (before any task starts)."""
    at_once = min(workers, len(config.tasks()))
    n, d0 = max(config.sizes), max(config.dims)
    needed = at_once * task_bytes(config, n, d0) + (WORKER_BYTES * at_once if at_once > 1
                                                    else 0)
    check_memory(needed, "cpu", f"the kernel sweep (its largest task N={n}, d0={d0}, "
                                f"{at_once} at a time)")


# ----------------------------------------------------------------------------- one task
def run_task(config: SweepConfig, n: int, d0: int, draw: int) -> dict[str, Any]:
    """Draw one data set and measure every series on it (JSON-ready)."""
    seed = int(np.random.SeedSequence([config.seed, n, d0, draw]).generate_state(1)[0])
    x, labels = d1(d0, config.mean, config.std).sample(config.class_sizes(n), seed)
    record: dict[str, Any] = {"n": n, "d0": d0, "draw": draw, "seed": seed,
                              "data": {"nc1": feature_nc1(x, labels).nc1}}
    gram: dict[str, dict[str, np.ndarray]] = {}
    series: dict[str, Any] = {}
    for name in config.series:
        method, activation = split_series(name)
        start = time.perf_counter()
        if method in ("nngp", "ntk"):
            if activation not in gram:
                gram[activation] = two_layer_kernels(
                    x, activation=activation, sigma_w=config.sigma_w, sigma_b=config.sigma_b,
                    get=("nngp_hidden", "ntk"))
            kernel = gram[activation]["nngp_hidden" if method == "nngp" else "ntk"]
            series[name] = {"status": "ok", **_nc1_fields(kernel, labels)}
        elif method == "adaptive":
            series[name] = _adaptive(config, x, labels, activation)
        else:
            series[name] = _network(config, x, labels, activation, seed)
        series[name]["seconds"] = round(time.perf_counter() - start, 3)
    record["series"] = series
    return record


def _nc1_fields(kernel: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    value = kernel_nc1(kernel, labels)
    return {"nc1": value.nc1, "trace_within": value.trace_within,
            "trace_between": value.trace_between}


def _adaptive(config: SweepConfig, x: np.ndarray, labels: np.ndarray, activation: str) -> dict:
    result = adaptive_kernel(x, labels, width=config.adaptive_width, activation=activation,
                             sigma_w=config.sigma_w, sigma_a=config.sigma_a, noise=config.noise,
                             sigma_b=config.sigma_b)
    out: dict[str, Any] = {
        "status": "ok" if result.converged else result.status,
        "width_reached": result.width_reached if math.isfinite(result.width_reached) else None,
        "residual": result.residual if math.isfinite(result.residual) else None,
        "evaluations": result.evaluations, "message": result.message,
        "path": [{k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                  for k, v in step.items()} for step in result.path],
    }
    if result.converged:
        out.update(_nc1_fields(result.kernel, labels))
        # largest eigenvalue of the weights' Sigma in units of the prior sigma_w^2/d0
        weights = result.sigma[: x.shape[1], : x.shape[1]]
        out["sigma_top_eigenvalue"] = float(np.linalg.eigvalsh(weights)[-1] * x.shape[1]
                                            / config.sigma_w**2)
    return out


def _network(config: SweepConfig, x: np.ndarray, labels: np.ndarray, activation: str,
             seed: int) -> dict:
    result = train_network(x, labels, width=config.network_width, activation=activation,
                           sigma_w=config.sigma_w, sigma_b=config.sigma_b, lr=config.lr,
                           steps=config.steps, weight_decay=config.weight_decay, seed=seed)
    if result.diverged:
        return {"status": "diverged", "message": "training loss became non-finite",
                "history": _finite(result.history)}
    return {"status": "ok", "nc1": result.nc1, "nc1_init": result.nc1_init,
            "loss": result.loss, "accuracy": result.accuracy, "history": result.history}


def _finite(history: dict[str, list[float]]) -> dict[str, list[float | None]]:
    return {k: [v if math.isfinite(v) else None for v in values] for k, values in history.items()}


# ----------------------------------------------------------------------------- the sweep
@dataclass
class SweepState:
    """A sweep's JSON document: the config and one record per finished task."""

    config: SweepConfig
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        records = [self.records[task_key(*t)] for t in self.config.tasks()
                   if task_key(*t) in self.records]
        return {"format": FORMAT_VERSION, "config": _config_dict(self.config),
                "records": records, "summary": summarize(self.config, records)}


def run_sweep(
    config: SweepConfig,
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    workers: int = 1,
    on_task: Callable[[tuple[int, int, int], int, int], None] | None = None,
) -> dict[str, Any]:
    """Run every (N, d0, draw) task and return the JSON document.

    Parameters
    ----------
    config : SweepConfig
    checkpoint : path, optional
        The JSON document is rewritten here atomically after every finished task.
    resume : bool
        Keep the tasks already in ``checkpoint`` (its config must match) and run the rest.
    workers : int
        Worker processes (one torch thread each); 1 runs in this process.
    on_task : callable, optional
        Called as on_task((N, d0, draw), done, total) after each finished task.
    """
    workers = check_scalar(workers, "workers", int, min_val=1)
    check_sweep_memory(config, workers)
    state = SweepState(config)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state.records = _load_checkpoint(checkpoint, config)
    todo = [t for t in config.tasks() if task_key(*t) not in state.records]
    total = len(config.tasks())

    def finished(task: tuple[int, int, int], record: dict[str, Any]) -> None:
        state.records[task_key(*task)] = record
        if checkpoint is not None:
            write_json(checkpoint, state.to_dict())
        if on_task is not None:
            on_task(task, len(state.records), total)

    if workers <= 1 or len(todo) <= 1:
        with torch_threads(1):
            for task in todo:
                finished(task, run_task(config, *task))
    else:
        _run_pool(config, todo, workers, finished)
    return state.to_dict()


def _run_pool(config: SweepConfig, todo: list[tuple[int, int, int]], workers: int,
              finished: Callable[[tuple[int, int, int], dict[str, Any]], None]) -> None:
    # spawn, not fork: a forked child inherits torch's thread pool in an undefined state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(os.getpid(),)) as pool:
        running: dict[Future, tuple[int, int, int]] = {}
        queue = list(reversed(todo))
        while queue or running:
            while queue and len(running) < 2 * workers:
                task = queue.pop()
                running[pool.submit(run_task, config, *task)] = task
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                finished(running.pop(future), future.result())


def _start_worker(parent: int) -> None:
    """Set up a worker process: one torch thread, and an end together with ``parent``."""
    # the tasks are many small factorizations: threads only add synchronization
    torch.set_num_threads(1)
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """End this process when the process ``parent`` ends, however it ends.

    A parent killed by SIGKILL runs no clean-up, and its workers would go on computing
    as orphans. On Linux the kernel sends this process SIGKILL when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); on every system a daemon thread also checks, every
    ``PARENT_POLL_S`` seconds, that the parent is still the one that started it.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):  # no libc to call: the thread below still watches
            pass
    if os.getppid() != parent:  # the parent died before the kernel could be told
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="nclab-parent-watch",
                     daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _config_dict(config: SweepConfig) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(config).items()}


def config_from_dict(data: dict[str, Any]) -> SweepConfig:
    """Inverse of the JSON ``config`` entry."""
    known = {f for f in SweepConfig.__dataclass_fields__}
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in data.items() if k in known}
    return replace(SweepConfig(), **values)


def _load_checkpoint(path: str | os.PathLike, config: SweepConfig) -> dict[str, dict]:
    import json

    try:
        document = json.loads(Path(path).read_text())
        saved = config_from_dict(document["config"])
        records = document["records"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NCInputError(f"{path}: not a sweep checkpoint ({exc})") from None
    if saved != config:
        raise NCInputError(f"{path} was written by a sweep with other settings; use another "
                           "--out folder or drop --resume")
    return {task_key(r["n"], r["d0"], r["draw"]): r for r in records}


# ----------------------------------------------------------------------------- summary
def summarize(config: SweepConfig, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std (ddof=0) of log10 NC1 and of log10(NC1 / NC1(data)) per series, N, d0.

    Draws whose series did not produce a value (a diverged or unconverged adaptive
    kernel, a diverged training run) are counted in ``failed`` with their statuses and
    left out of the mean; ``count`` says how many draws made the mean.
    """
    records = list(records)
    out: dict[str, Any] = {}
    for name in ("data", *config.series):
        rows = []
        for n in config.sizes:
            for d0 in config.dims:
                group = [r for r in records if r["n"] == n and r["d0"] == d0]
                rows.append({"n": n, "d0": d0, **_reduce(group, name)})
        out[name] = rows
    return out


def _reduce(group: list[dict[str, Any]], name: str) -> dict[str, Any]:
    values: list[float] = []
    relative: list[float] = []
    statuses: dict[str, int] = {}
    for record in group:
        entry = record["data"] if name == "data" else record["series"][name]
        status = entry.get("status", "ok")
        statuses[status] = statuses.get(status, 0) + 1
        if status == "ok":
            values.append(math.log10(entry["nc1"]))
            relative.append(values[-1] - math.log10(record["data"]["nc1"]))

    def stats(v: list[float]) -> tuple[float | None, float | None]:
        return (float(np.mean(v)), float(np.std(v))) if v else (None, None)

    mean, std = stats(values)
    rel_mean, rel_std = stats(relative)
    failed = {k: v for k, v in statuses.items() if k != "ok"}
    return {"count": len(values), "failed": failed, "log10_nc1_mean": mean,
            "log10_nc1_std": std, "log10_relative_mean": rel_mean, "log10_relative_std": rel_std}


# ----------------------------------------------------------------------------- report
#: (lower, higher, claim) pairs checked draw by draw in the report, when both were run.
CLAIMS = (
    ("nngp-erf", "ntk-erf", "NTK NC1 >= NNGP NC1 (erf)"),
    ("nngp-relu", "ntk-relu", "NTK NC1 >= NNGP NC1 (ReLU)"),
    ("nngp-erf", "nngp-relu", "erf NNGP NC1 below ReLU NNGP NC1"),
    ("ntk-erf", "ntk-relu", "erf NTK NC1 below ReLU NTK NC1"),
    ("adaptive-erf", "nngp-erf", "adaptive kernel NC1 below NNGP NC1 (erf)"),
    ("adaptive-erf", "network-erf", "adaptive kernel NC1 below trained network NC1 (erf)"),
    ("network-erf", "nngp-erf", "trained network NC1 below NNGP NC1 (erf)"),
)


def check_claim(records: Iterable[dict[str, Any]], lower: str, higher: str,
                rtol: float = 1e-9) -> tuple[int, int]:
    """(draws where NC1[lower] <= NC1[higher] (1 + rtol), draws where both have a value)."""
    held = total = 0
    for record in records:
        a, b = record["series"].get(lower, {}), record["series"].get(higher, {})
        if a.get("status") == "ok" and b.get("status") == "ok":
            total += 1
            held += a["nc1"] <= b["nc1"] * (1 + rtol)
    return held, total


def report_markdown(document: dict[str, Any]) -> str:
    """Mean +- std of log10 NC1 per N (a table each) and the claims, as markdown."""
    config, summary, records = document["config"], document["summary"], document["records"]
    names = list(summary)
    lines = [f"# Kernel NC1 sweep: {len(records)} tasks, {config['draws']} draws per (N, d0)",
             "", "mean ± std over draws of log10 NC1; `(k failed)` counts draws without a "
             "value (adaptive kernel diverged or not converged, training diverged).", ""]
    for n in config["sizes"]:
        lines += [f"## N = {n}", "", "| d0 | " + " | ".join(names) + " |",
                  "|---:|" + "---:|" * len(names)]
        for d0 in config["dims"]:
            cells = []
            for name in names:
                row = next(r for r in summary[name] if r["n"] == n and r["d0"] == d0)
                mean, std = row["log10_nc1_mean"], row["log10_nc1_std"]
                cell = "n/a" if mean is None else f"{mean:.3f} ± {std:.3f}"
                failed = sum(row["failed"].values())
                cells.append(cell + (f" ({failed} failed)" if failed else ""))
            lines.append(f"| {d0} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Claims, draw by draw", "", "| claim | draws where it holds |", "|---|---:|"]
    for lower, higher, claim in CLAIMS:
        held, total = check_claim(records, lower, higher)
        if total:
            lines.append(f"| {claim} | {held} / {total} |")
    return "\n".join(lines) + "\n"
