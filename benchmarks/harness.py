"""The small harness every benchmark shares: path set-up, thread control, timing, tables.

Import it first (``from harness import ...``, the scripts' own folder is on ``sys.path`` when run as
``python benchmarks/<name>.py``): it puts the checkout first on ``sys.path`` and sets
``OMP_WAIT_POLICY=PASSIVE`` before torch is imported. OpenMP threads that spin while waiting make MKL /
oneDNN pathologically slow when other processes share the CPUs (measured: ``torch.linalg.eigh`` of a
512 x 512 covariance 7 s instead of 0.04 s); passive waiting costs little on an idle machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) in sys.path:
    sys.path.remove(str(REPO))
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

SLOW_CALL_S = 2.0  # calls slower than this are not warmed up


def sample_video() -> Path | None:
    """The real sample clip: ``$LAVIT_SAMPLE_VIDEO``, else ``shared/data/msrvtt_video7013.mp4`` beside the checkout."""
    path = Path(os.environ.get("LAVIT_SAMPLE_VIDEO", REPO.parent / "shared" / "data" / "msrvtt_video7013.mp4"))
    return path if path.is_file() else None


# --------------------------------------------------------------------------------------- timing


def sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], Any], repeats: int, stat: str = "best", device: torch.device | None = None, *,
            warmup: Callable[[], Any] | None = None, min_time: float = 0.25, slow: float = SLOW_CALL_S) -> tuple[float, Any]:
    """Warm up once, then time ``repeats`` runs; returns (best or median seconds per call, last result).

    Each timed run calls ``fn`` until ``min_time`` has passed (at least once) and takes the mean per call,
    so timer noise stays small for fast calls and a run never lasts much longer than one call or
    ``min_time``. The warm-up is ``warmup()`` when given (untimed), else a first call of ``fn``; a first
    call slower than ``slow`` counts as one of the timed runs (a cold call is never the faster one; pass
    ``slow=0`` when the caller has already warmed up). CUDA work is synchronised before each reading.
    """
    times: list[float] = []
    result = None
    if warmup is not None:
        warmup()
        sync(device)
    else:
        start = time.perf_counter()
        result = fn()
        sync(device)
        first = time.perf_counter() - start
        if first >= slow:
            times.append(first)
    for _ in range(repeats - len(times)):
        calls = 0
        start = time.perf_counter()
        while True:
            result = fn()
            calls += 1
            if time.perf_counter() - start >= min_time:
                break
        sync(device)
        times.append((time.perf_counter() - start) / calls)
    return (min(times) if stat == "best" else statistics.median(times)), result


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device`` when ``bf16``, else a no-op context."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


# ------------------------------------------------------------------------------- threads and noise


@contextlib.contextmanager
def peak_memory(device: torch.device, row: Any):
    """On CUDA, set ``row.peak_gib`` to the peak memory allocated inside the block (GiB); elsewhere nothing."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        if device.type == "cuda":
            row.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30


def openblas_libraries() -> list[tuple[str, Callable[[], int], Callable[[int], None]]]:
    """(file name, get_num_threads, set_num_threads) of every OpenBLAS loaded in this process (numpy and
    scipy each ship their own), found as threadpoolctl does; empty where /proc/self/maps is missing."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in os.path.basename(line.split()[-1]).lower()})
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
        except OSError:
            continue
        for prefix in ("openblas", "scipy_openblas"):
            for suffix in ("", "64_"):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    found.append((os.path.basename(path), get, put))
                    break
            else:
                continue
            break
    return found


@contextlib.contextmanager
def cpu_threads(n: int):
    """Within the block, torch and every loaded OpenBLAS use ``n`` threads (0: leave them as they are)."""
    if n <= 0:
        yield
        return
    torch_before = torch.get_num_threads()
    blas_before = [(get(), put) for _, get, put in openblas_libraries()]
    torch.set_num_threads(n)
    for _, put in blas_before:
        put(n)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        for before, put in blas_before:
            put(before)


@contextlib.contextmanager
def quiet_logging(level: int = logging.ERROR):
    """Silence library log records below ``level`` (open_clip warns that no pretrained weights were loaded)."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(previous)


def load_average() -> str:
    """The 1-minute load average, a hint of how much the CPUs were shared during the run."""
    try:
        return f"load average {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load average n/a"


def version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception as err:  # noqa: BLE001
        return f"unavailable ({type(err).__name__})"


def machine_line() -> str:
    """CPUs, usable CPUs, load and torch threads: printed by every benchmark before its tables."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return f"{os.cpu_count()} CPUs ({affinity} usable), {load_average()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {cuda}"


# ---------------------------------------------------------------------------------------- tables


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A plain-text table: columns padded to their widest cell, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(r[i]) for r in cells[1:] if r[i] not in ("", "-")) for i in range(len(headers))]
    if title:
        print(f"\n=== {title}")
    for k, row in enumerate(cells):
        print("  ".join(c.rjust(w) if numeric[i] and k else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def ratio(value: float | None, baseline: float | None, digits: int = 2) -> str:
    """``value / baseline`` as ``"1.23x"`` (empty when either is missing)."""
    if value is None or baseline is None or baseline == 0:
        return ""
    return f"{value / baseline:.{digits}f}x"


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("x%"))
        return True
    except ValueError:
        return False
