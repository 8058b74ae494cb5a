"""Preprocessing throughput of ``lavit preprocess`` (clips/s per core) and training-time data throughput (batches/s)
of ``StreamingClipDataModule`` over its shards against the decoding ``VideoTextDataModule`` on the same clips.

Run (from the repository root, in the project's virtualenv)::

    python benchmarks/preprocess.py                  # 32 demo videos, workers 1 and 2, loaders with 0 and 2 workers
    python benchmarks/preprocess.py --quick          # smoke run: 8 videos, 1 preprocessing worker, 1 repeat
    python benchmarks/preprocess.py --videos 64 --epoch-clips 256 --batch-size 16 --repeats 5

Input: ``lavit.video.demo_data.make_demo_dataset`` (``--videos`` videos, 320 x 192, 12 fps, ``--duration`` 4 s: one
official 24-frame clip each at 6 fps, so a batch of either DataModule holds ``--batch-size`` clips), the manifest's
rows repeated in whole passes to ``--epoch-clips`` rows (ids suffixed; rendering is slower than decoding), so that
litdata's fixed start-up is small against the work.

(a) Preprocessing: ``lavit.shards.preprocess.preprocess`` (what ``lavit preprocess`` runs) with stages ``motion`` and
    ``detokenizer`` (``--frame-size``, default 64x64, JPEG frames), ``--workers`` processes (default 1, and 2 when
    the machine has 2 usable CPUs), one timed run each into a fresh folder. The wall time includes litdata's fixed
    start-up (spawned workers import torch, polling, index merge), measured by a run on one video ("start-up s");
    "clips/s/core" is clips / wall s / workers. "CPU s" is the CPU time (user + system) of this process and its
    finished children (the litdata workers) during the run, and "clips/CPU-s" is (clips - 1) / (CPU s - the one-video
    run's CPU s): clips per second of one busy core once started, the rate a long run approaches, and far less
    sensitive than wall time to other processes sharing the CPUs. "vs (0)" is clips/CPU-s over the baseline row (0):
    ``extract_clips`` on the same videos in this process, one thread, the decoding limit (with the frames for the
    detokenizer stage).
(b) Training-time throughput: one epoch of ``train_dataloader()`` (loader start-up included: that is what an epoch
    costs) of ``StreamingClipDataModule`` against ``VideoTextDataModule`` with ``cache_clips=False`` (every epoch
    decodes again) over the same clips (the motion shards of (a) with the most workers), same clip options and
    ``--batch-size``, with
    ``num_workers`` 0 and 2 (``--loader-workers``). Each epoch is timed with ``harness.measure`` (one warm-up epoch,
    then ``--repeats`` runs; best, or ``--stat median``). "vs decoding" is streaming batches/s over decoding
    batches/s with the same ``num_workers``, measured in the same run. Acceptance: >= 5x.

``litdata.optimize`` forces the "spawn" start method on the whole process; ``preprocess`` restores it. The script
prints the start method before (a) and before (b) and stops if they differ (spawned DataLoader workers would each
import torch again and skew (b)).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from harness import machine_line, measure, print_table, ratio

TARGET = 5.0  # streaming batches/s over decoding batches/s


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --------------------------------------------------------------------------------- (a) preprocessing


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_preprocess(records, out: Path, stage: str, workers: int, frame_size) -> tuple[float, float, int]:
    """(wall s, CPU s, samples written) of one ``preprocess`` run."""
    from lavit.shards.preprocess import preprocess

    start, cpu = time.perf_counter(), cpu_seconds()
    report = preprocess(records, out, stage, workers, frame_size=frame_size, progress=False, chunk_bytes="16MB")
    return time.perf_counter() - start, cpu_seconds() - cpu, report.num_samples


def preprocessing_rows(manifest: Path, tmp: Path, args) -> tuple[list[list], Path]:
    """Rows of table (a) and the motion shards of the most workers (the input of (b))."""
    from datamodules.manifest import read_manifest
    from lavit.video import extract_clips

    records = read_manifest(manifest)
    rows, shards = [], tmp / f"motion_{max(args.workers)}"
    for stage in ("motion", "detokenizer"):
        frame_size = args.frame_size if stage == "detokenizer" else None
        start, cpu = time.perf_counter(), cpu_seconds()
        clips = sum(len(extract_clips(r.path, frame_size=frame_size).starts) for r in records)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        base = clips / cpu
        rows.append(["(0)", stage, "extract_clips in process", 1, clips, f"{seconds:.2f}", "-", f"{clips / seconds:.2f}",
                     f"{cpu:.2f}", f"{base:.2f}", "1.00x"])
        for workers in args.workers:
            startup, startup_cpu, one = timed_preprocess(records[:1], tmp / f"{stage}_{workers}_one", stage, workers, frame_size)
            seconds, cpu, n = timed_preprocess(records, tmp / f"{stage}_{workers}", stage, workers, frame_size)
            steady = (n - one) / (cpu - startup_cpu) if cpu > startup_cpu else None
            rows.append(["(a)", stage, "lavit preprocess", workers, n, f"{seconds:.2f}", f"{startup:.2f}",
                         f"{n / seconds / workers:.2f}", f"{cpu:.2f}", "-" if steady is None else f"{steady:.2f}",
                         ratio(steady, base)])
    return rows, shards


def epoch_manifest(manifest: Path, clips: int) -> Path:
    """The demo manifest's rows repeated (ids suffixed) up to ``clips`` rows, in whole passes: every video once
    before any twice (so no two consecutive rows name the same video)."""
    import csv

    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    out = [{**row, "video_id": f"{row['video_id']}_{k // len(rows)}"} for k, row in
           ((k, rows[k % len(rows)]) for k in range(max(clips, len(rows))))]
    path = manifest.parent / f"epoch_{len(out)}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(out)
    return path


# ----------------------------------------------------------------------------- (b) data throughput


def epoch(datamodule) -> int:
    """Iterate one epoch of the train loader; returns the number of batches."""
    return sum(1 for _ in datamodule.train_dataloader())


def throughput_rows(manifest: Path, shards: Path, args) -> tuple[list[list], list[float]]:
    from datamodules import StreamingClipDataModule, VideoTextDataModule

    rows, ratios = [], []
    for workers in args.loader_workers:
        decoding = VideoTextDataModule(train_manifest=str(manifest), batch_size=args.batch_size, num_workers=workers,
                                       clips_per_video=1, cache_clips=False)
        decoding.setup("fit")
        streaming = StreamingClipDataModule(str(shards), batch_size=args.batch_size, num_workers=workers)
        streaming.setup("fit")
        rates = {}
        for name, dm in (("decoding (VideoTextDataModule)", decoding), ("streaming (StreamingClipDataModule)", streaming)):
            seconds, batches = measure(lambda dm=dm: epoch(dm), args.repeats, args.stat, min_time=0.0, slow=float("inf"))
            rates[name] = batches / seconds
            rows.append([name, workers, batches, f"{seconds:.3f}", f"{rates[name]:.2f}"])
        names = list(rates)
        ratios.append(rates[names[1]] / rates[names[0]])
        rows[-2].append("1.00x")
        rows[-1].append(ratio(rates[names[1]], rates[names[0]]))
    return rows, ratios


# ----------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 videos, batch 4, 1 preprocessing worker, 1 repeat")
    parser.add_argument("--videos", type=int, help="demo videos (default 32; 8 with --quick)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per demo video (default 4: one clip each)")
    parser.add_argument("--epoch-clips", type=int, help="clips of (a) and per epoch of (b) (default 128; 32 with --quick)")
    parser.add_argument("--batch-size", type=int, help="clips per batch (default 8; 4 with --quick)")
    parser.add_argument("--workers", help="comma-separated preprocessing workers (default 1,2 on 2+ CPUs; 1 with --quick)")
    parser.add_argument("--loader-workers", default="0,2", help="comma-separated DataLoader num_workers (default 0,2)")
    parser.add_argument("--frame-size", type=parse_size, default=(64, 64), help="WxH of the detokenizer stage's frames (default 64x64)")
    parser.add_argument("--repeats", type=int, help="timed epochs per loader, after one warm-up (default 3; 1 with --quick)")
    parser.add_argument("--stat", choices=("best", "median"), default="best", help="which run to report (default best)")
    args = parser.parse_args(argv)
    q = args.quick
    args.videos = args.videos or (8 if q else 32)
    args.batch_size = args.batch_size or (4 if q else 8)
    args.epoch_clips = args.epoch_clips or (32 if q else 128)
    args.repeats = args.repeats or (1 if q else 3)
    args.workers = [int(w) for w in (args.workers or ("1" if q or usable_cpus() < 2 else "1,2")).split(",")]
    args.loader_workers = [int(w) for w in args.loader_workers.split(",") if w != ""]

    from lavit.video.demo_data import make_demo_dataset

    with tempfile.TemporaryDirectory(prefix="lavit-bench-") as tmpdir:
        tmp = Path(tmpdir)
        start = time.perf_counter()
        manifest = make_demo_dataset(tmp / "demo", num_videos=args.videos, duration=args.duration, progress=False)
        print(f"demo dataset: {args.videos} videos of {args.duration:g} s, 320x192 12 fps, rendered in {time.perf_counter() - start:.1f} s")
        print(machine_line())
        method = multiprocessing.get_start_method(allow_none=True)
        print(f"multiprocessing start method before (a): {method}")

        epoch_csv = epoch_manifest(manifest, args.epoch_clips)
        print(f"input of (a) and (b): {epoch_csv.name}, the {args.videos} videos' rows repeated to {args.epoch_clips} clips")
        rows, shards = preprocessing_rows(epoch_csv, tmp, args)
        print_table(["row", "stage", "method", "workers", "clips", "wall s", "start-up s", "clips/s/core", "CPU s", "clips/CPU-s",
                     "vs (0)"], rows, title="(a) preprocessing, clips per second per core (clips/CPU-s: start-up excluded)")

        after = multiprocessing.get_start_method(allow_none=True)
        print(f"\nmultiprocessing start method before (b): {after}")
        if after != method:
            print(f"error: litdata.optimize changed the start method from {method} to {after}: (b) would be skewed", file=sys.stderr)
            return 1
        rows, ratios = throughput_rows(epoch_csv, shards, args)
        print_table(["data module", "num_workers", "batches", "epoch s", "batches/s", "vs decoding"], rows,
                    title=f"(b) training-time data throughput, {args.batch_size} clips per batch, one epoch")

    ok = all(r >= TARGET for r in ratios)
    print(f"\nstreaming / decoding batches/s: {', '.join(f'{r:.1f}x' for r in ratios)} (target >= {TARGET:g}x): "
          f"{'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
