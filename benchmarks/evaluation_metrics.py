"""Cost of the evaluation metrics: feature-extractor throughput, and the Fréchet distance against scipy.

Run (from the repository root, in the project's virtualenv)::

    python benchmarks/evaluation_metrics.py                     # ~1-3 min on 2 CPU cores; adds CUDA rows when available
    python benchmarks/evaluation_metrics.py --quick             # ~20 s smoke run
    python benchmarks/evaluation_metrics.py --extractors i3d,fvd --dims 2048 --repeats 10 --stat median
    python benchmarks/evaluation_metrics.py --cpu-bf16          # also time bf16 autocast on the CPU

ALL NETWORKS ARE RANDOMLY INITIALISED: no weight file is loaded (none exists in this checkout), so
the features are meaningless; only the cost is measured, which does not depend on the weights. Every
network is built after ``torch.manual_seed(0)``; inputs come from a generator seeded with ``--seed``.

Table 1, extractors (gradients off, eval mode; "items/s" is clips/s or images/s):
  I3D network      ``metrics.networks.InceptionI3d`` on (B, 3, 16, 224, 224) floats in [-1, 1].
  FVD.update       ``metrics.FVD(network=<the same I3D>).update(videos, real=True)`` on uint8 videos
                   (B, 16, 3, 128, 128): frame selection, scaling, resize to 224, I3D, float64
                   statistics update -- the whole metric path. Baseline: the I3D network row of the
                   same device and dtype, so the ratio is the metric's overhead.
  C3D network      ``metrics.networks.C3D`` on (B, 3, 16, 112, 112).
  Inception-V3     torch-fidelity's ``FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])`` on
                   uint8 (B, 3, 256, 256) (it resizes to 299 itself). The class always loads a state
                   dict in ``__init__``; it is given a BytesIO of ``torch.save({})`` while
                   ``load_state_dict`` is patched to a no-op, which leaves the default random init.
                   fp32 only: torch-fidelity fixes its internal dtype, so no bf16 row.
  CLIP ViT-B-16/32 ``open_clip.create_model(name, pretrained=None).encode_image`` on (B, 3, 224, 224).
                   Baseline of ViT-B-32: ViT-B-16 on the same device and dtype.
Rows run on the CPU in float32, and, when ``torch.cuda.is_available()`` (or ``--device cuda``), on
CUDA in float32 and under ``torch.autocast("cuda", dtype=torch.bfloat16)`` ("bf16-mixed"); the
baseline of a row is the one named above (same device and dtype) when it ran, else the CPU fp32
row of the same extractor ("(baseline)": the row is itself a baseline).

Table 2, Fréchet distance on float64 statistics (mean, covariance) of N = max(2 d, 1000) random
correlated features per side, d in ``--dims`` (default 64, 512, 2048), on the CPU:
  ours   ``metrics.frechet.frechet_distance(mu1, s1, mu2, s2)``: eigenvalue route, torch float64.
  scipy  ``diff @ diff + tr(s1) + tr(s2) - 2 tr(scipy.linalg.sqrtm(s1 @ s2)).real`` on the same
         arrays (numpy views of the same float64 tensors).
The ratio is scipy seconds / ours seconds; the two values are printed with their absolute and
relative difference (expected ~1e-6 relative or better). Both run with ``--frechet-threads`` threads
(default 1: torch via ``torch.set_num_threads``, numpy's and scipy's OpenBLAS via their
``openblas_set_num_threads``), so neither library gets more cores than the other, and the numbers do not
collapse when other processes share the CPUs (multi-threaded OpenBLAS ``sqrtm`` at d=512 was measured
at 9.5 s instead of 0.2 s on a 2-core machine under load).

Timing: each measurement is warmed up once, then run ``--repeats`` times (``time.perf_counter``,
CUDA synchronised; each run repeats the call until 0.25 s have passed and takes the mean per call);
the best run is reported (``--stat median`` for the median). A call longer than 2 s is not warmed
up: its first call counts as one of the timed runs (the cold call is never the faster one). Other
processes on the same CPUs inflate every number, so the load average is printed at start and end;
the script sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is already set (see the comment at the imports).
Defaults: CPU batch 2 clips / 4 images, 5 repeats; CUDA batch 16 clips / 64 images, 10 repeats;
3 Fréchet repeats. ``--quick``: CPU batch 1 clip / 2 images, 1 repeat (2 on CUDA), Fréchet d in
(64, 512), 1 repeat.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from unittest import mock

from harness import autocast, cpu_threads, load_average, measure, openblas_libraries, print_table, quiet_logging, ratio, version  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from metrics.frechet import frechet_distance, gaussian_statistics  # noqa: E402

CLIP_FRAMES = 16
FVD_VIDEO_SIZE = 128


# ----------------------------------------------------------------------------------- extractors


def build_inception_v3() -> nn.Module:
    """torch-fidelity's Inception-V3 (2048-d pool features) with random weights, nothing downloaded."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    buffer = io.BytesIO()
    torch.save({}, buffer)
    buffer.seek(0)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=buffer)


def build_clip(name: str) -> nn.Module:
    import open_clip

    with quiet_logging():
        return open_clip.create_model(name, pretrained=None)


@dataclass
class Extractor:
    key: str
    label: str
    shape: str  # input description, B = batch
    unit: str  # "clips" or "images"
    build: Callable[[], nn.Module]
    make_input: Callable[[int, torch.Generator], torch.Tensor]  # (batch, generator) -> CPU tensor
    call: Callable[[nn.Module, torch.Tensor], Any]
    bf16: bool = True
    base: str | None = None  # key of the extractor whose row (same device, dtype) is the baseline
    count: Callable[[nn.Module], int] = lambda m: sum(p.numel() for p in m.parameters())


def extractors() -> list[Extractor]:
    from metrics import FVD
    from metrics.networks import C3D, InceptionI3d

    shared: dict[str, nn.Module] = {}

    def i3d() -> nn.Module:
        if "i3d" not in shared:
            shared["i3d"] = InceptionI3d().eval()
        return shared["i3d"]

    def clip_images(b, g):
        return torch.randn(b, 3, 224, 224, generator=g)

    def i3d_clips(b, g):
        return torch.rand(b, 3, CLIP_FRAMES, 224, 224, generator=g) * 2 - 1

    def c3d_clips(b, g):
        return torch.rand(b, 3, CLIP_FRAMES, 112, 112, generator=g) * 2 - 1

    def fvd_videos(b, g):
        return torch.randint(0, 256, (b, CLIP_FRAMES, 3, FVD_VIDEO_SIZE, FVD_VIDEO_SIZE), generator=g, dtype=torch.uint8)

    def uint8_images(b, g):
        return torch.randint(0, 256, (b, 3, 256, 256), generator=g, dtype=torch.uint8)

    return [
        Extractor("i3d", "I3D network", "(B,3,16,224,224) [-1,1]", "clips", i3d, i3d_clips, lambda m, x: m(x)),
        Extractor("fvd", "FVD.update (I3D)", "uint8 (B,16,3,128,128)", "clips", lambda: FVD(network=i3d()).eval(),
                  fvd_videos, lambda m, x: m.update(x, real=True), base="i3d",
                  count=lambda m: sum(p.numel() for p in m.extractor.parameters())),
        Extractor("c3d", "C3D network", "(B,3,16,112,112)", "clips", lambda: C3D().eval(), c3d_clips, lambda m, x: m(x)),
        Extractor("inception", "Inception-V3 (fidelity)", "uint8 (B,3,256,256)", "images", lambda: build_inception_v3().eval(),
                  uint8_images, lambda m, x: m(x), bf16=False),
        Extractor("clip-b16", "CLIP ViT-B-16 image", "(B,3,224,224)", "images", lambda: build_clip("ViT-B-16").eval(),
                  clip_images, lambda m, x: m.encode_image(x), count=lambda m: sum(p.numel() for p in m.visual.parameters())),
        Extractor("clip-b32", "CLIP ViT-B-32 image", "(B,3,224,224)", "images", lambda: build_clip("ViT-B-32").eval(),
                  clip_images, lambda m, x: m.encode_image(x), base="clip-b16",
                  count=lambda m: sum(p.numel() for p in m.visual.parameters())),
    ]


@dataclass
class Row:
    ext: Extractor
    device: str
    dtype: str
    batch: int
    params: int = 0
    seconds: float | None = None
    note: str = ""

    @property
    def per_s(self) -> float | None:
        return self.batch / self.seconds if self.seconds else None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.ext.key, self.device, self.dtype

    @property
    def base_keys(self) -> list[tuple[str, str, str]]:
        """Candidate baselines, first present wins: the named extractor on the same device and dtype,
        then this extractor's CPU fp32 row (never the row itself)."""
        keys = []
        if self.ext.base is not None:
            keys.append((self.ext.base, self.device, self.dtype))
        keys.append((self.ext.key, "cpu", "fp32"))
        return [k for k in keys if k != self.key]


def extractor_rows(ext: Extractor, settings: list[tuple[torch.device, bool, int, int]], args) -> list[Row]:
    """All rows of one extractor; ``settings``: (device, bf16, batch, repeats) in order."""
    torch.manual_seed(0)
    start = time.perf_counter()
    model = ext.build()
    build_s = time.perf_counter() - start
    params = ext.count(model)
    rows = []
    for device, bf16, batch, repeats in settings:
        dtype = "bf16-mixed" if bf16 else "fp32"
        row = Row(ext, device.type, dtype, batch, params)
        if bf16 and not ext.bf16:
            row.note = "skipped: torch-fidelity fixes its internal dtype (fp32)"
            rows.append(row)
            continue
        model = model.to(device)
        x = ext.make_input(batch, torch.Generator().manual_seed(args.seed)).to(device)

        def call(model=model, x=x, device=device, bf16=bf16):
            with autocast(device, bf16):
                return ext.call(model, x)

        try:
            row.seconds, _ = measure(call, repeats, args.stat, device)
        except Exception as err:  # noqa: BLE001 -- report and go on with the other rows
            row.note = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:80] if str(err) else ''}"
        rows.append(row)
        del x, call
    if rows and not rows[0].note:
        rows[0].note = f"built in {build_s:.1f} s"
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return rows


def print_extractor_table(rows: list[Row]) -> None:
    by_key = {r.key: r for r in rows}
    table = []
    for r in rows:
        lead = [r.ext.label, r.ext.shape, f"{r.params / 1e6:.1f}", r.device, r.dtype, r.batch]
        if r.seconds is None:
            table.append(lead + ["-", "-", r.ext.unit, "-", "-", r.note])
            continue
        base = next((by_key[k] for k in r.base_keys if k in by_key and by_key[k].per_s), None)
        base_name = f"{base.ext.label.split(' (')[0]} {base.device} {base.dtype}" if base is not None else "(baseline)"
        table.append(lead + [f"{r.seconds:.4f}", f"{r.per_s:.3g}", r.ext.unit, ratio(r.per_s, base.per_s if base else None) or "-",
                             base_name, r.note])
    print_table(["extractor", "input", "Mparams", "device", "dtype", "batch", "s/batch", "items/s", "unit", "vs base", "baseline", "note"], table)


# -------------------------------------------------------------------------------------- Fréchet


@dataclass
class FrechetResult:
    d: int
    n: int
    ours_s: float
    scipy_s: float
    ours: float
    scipy: float
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.scipy_s / self.ours_s

    @property
    def abs_diff(self) -> float:
        return abs(self.ours - self.scipy)

    @property
    def rel_diff(self) -> float:
        return self.abs_diff / max(abs(self.scipy), 1e-300)


def correlated_statistics(d: int, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Float64 (mu1, s1, mu2, s2) of two sets of n correlated d-dim features.

    Features are ``z @ M`` with ``M`` a random mixing matrix whose columns decay in scale (a spectrum
    like real network features); the second set uses a perturbed mixing and a shifted mean.
    """
    g = torch.Generator().manual_seed(seed)
    decay = torch.linspace(1.0, 0.05, d, dtype=torch.float64)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d) * decay
    mix2 = mix + 0.2 * torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d) * decay
    f1 = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix
    f2 = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix2 + 0.1 * torch.randn(d, generator=g, dtype=torch.float64)
    return (*gaussian_statistics(f1), *gaussian_statistics(f2))


def scipy_frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    import scipy.linalg

    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)


def frechet_rows(dims: list[int], args) -> list[FrechetResult]:
    import scipy.linalg  # noqa: F401 -- load scipy's OpenBLAS before cpu_threads sets its thread count

    results = []
    for d in dims:
        n = max(2 * d, 1000)
        mu1, s1, mu2, s2 = correlated_statistics(d, n, args.seed)
        arrays = tuple(t.numpy() for t in (mu1, s1, mu2, s2))
        with cpu_threads(args.frechet_threads):
            ours_s, ours = measure(lambda: frechet_distance(mu1, s1, mu2, s2), args.frechet_repeats, args.stat)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sqrtm may warn about a singular / ill-conditioned product
                scipy_s, value = measure(lambda: scipy_frechet(*arrays), args.frechet_repeats, args.stat)
        results.append(FrechetResult(d, n, ours_s, scipy_s, float(ours), value))
    return results


def print_frechet_table(results: list[FrechetResult]) -> None:
    print_table(["d", "N", "ours s", "scipy s", "scipy/ours", "FD ours", "FD scipy", "|diff|", "rel diff", "agree (<1e-6)"],
                [[r.d, r.n, f"{r.ours_s:.4f}", f"{r.scipy_s:.4f}", f"{r.ratio:.2f}x", f"{r.ours:.10f}", f"{r.scipy:.10f}",
                  f"{r.abs_diff:.2e}", f"{r.rel_diff:.2e}", "yes" if r.rel_diff < 1e-6 else "NO"] for r in results])


# ----------------------------------------------------------------------------------------- main


def loading_table(repeats: int, stat: str) -> None:
    """Evaluation data loading: ``read_frames`` (16 frames -> (16, 3, 224, 224) uint8) against decoding
    the same 16 frames with PyAV and nothing else, on the same 320x192 H.264 file."""
    import tempfile

    import av

    from lavit.video.synthetic import random_scene, write_video
    from lavit.video.frames import read_frames

    with tempfile.TemporaryDirectory() as tmp:
        scene, _ = random_scene(np.random.default_rng(0))
        path = write_video(scene, Path(tmp) / "clip.mp4", fps=24, duration=1.0)

        def decode_only():
            with av.open(str(path)) as container:
                for i, _frame in enumerate(container.decode(video=0)):
                    if i == 15:
                        return

        base, _ = measure(decode_only, repeats, stat)
        ours, _ = measure(lambda: read_frames(path, 16, "first", 224), repeats, stat)
    print("\n=== evaluation data loading (one 16-frame clip of a 320x192 H.264 file)")
    print(f"PyAV decode only (baseline)        {1 / base:8.1f} clips/s")
    print(f"read_frames (+ RGB, resize to 224) {1 / ours:8.1f} clips/s   {base / ours:.2f}x of the baseline")


def parse_list(text: str, cast=str) -> list:
    return [cast(v.strip()) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    names = [e.key for e in extractors()]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~20 s smoke run: batch 1 clip / 2 images, 1 repeat, d in (64, 512)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="accelerator for the extra rows (default cuda if available else cpu = CPU rows only); CPU rows always run")
    parser.add_argument("--extractors", default=",".join(names), help=f"comma-separated subset of {','.join(names)} (default all; '' for none)")
    parser.add_argument("--clip-batch", type=int, help="clips per call on the CPU (default 2; 1 with --quick)")
    parser.add_argument("--image-batch", type=int, help="images per call on the CPU (default 4; 2 with --quick)")
    parser.add_argument("--cuda-clip-batch", type=int, default=16, help="clips per call on CUDA (default 16)")
    parser.add_argument("--cuda-image-batch", type=int, default=64, help="images per call on CUDA (default 64)")
    parser.add_argument("--repeats", type=int, help="timed runs per CPU row, after one warm-up (default 5; 1 with --quick)")
    parser.add_argument("--cuda-repeats", type=int, help="timed runs per CUDA row (default 10; 2 with --quick)")
    parser.add_argument("--cpu-bf16", action="store_true", help="also time bf16 autocast on the CPU")
    parser.add_argument("--dims", help="comma-separated Fréchet dimensions d ('' for none; default 64,512,2048; 64,512 with --quick)")
    parser.add_argument("--frechet-repeats", type=int, help="timed runs per Fréchet measurement (default 3; 1 with --quick)")
    parser.add_argument("--stat", choices=("best", "median"), default="best", help="which run to report (default best)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of the extractor rows (default: torch's choice)")
    parser.add_argument("--frechet-threads", type=int, default=1,
                        help="threads of torch and of OpenBLAS (numpy / scipy) during the Fréchet comparison (default 1: "
                             "the same for both libraries, and stable when other processes share the CPUs; 0 = libraries' defaults)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random inputs and features (default 1; networks use 0)")
    args = parser.parse_args(argv)

    q = args.quick
    for name, quick, default in (("clip_batch", 1, 2), ("image_batch", 2, 4), ("repeats", 1, 5), ("cuda_repeats", 2, 10),
                                 ("frechet_repeats", 1, 3)):
        if getattr(args, name) is None:
            setattr(args, name, quick if q else default)
    dims = parse_list(args.dims if args.dims is not None else ("64,512" if q else "64,512,2048"), int)
    chosen = parse_list(args.extractors)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown extractors {unknown}; choose from {names}")
    if min(args.clip_batch, args.image_batch, args.cuda_clip_batch, args.cuda_image_batch, args.repeats,
           args.cuda_repeats, args.frechet_repeats, *dims, 2) < 1:
        parser.error("batches, repeats and dims must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.set_grad_enabled(False)
    cpu = torch.device("cpu")
    accel = torch.device(args.device)
    on_cuda = accel.type == "cuda"

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    where = f"CUDA {torch.cuda.get_device_name(accel)}" if on_cuda else (
        "CPU only (torch.cuda.is_available() is False)" if not torch.cuda.is_available() else f"CPU only (--device {args.device})")
    print(f"torch {torch.__version__}, torch-fidelity {version('torch_fidelity')}, open_clip {version('open_clip')}, "
          f"scipy {version('scipy')}, numpy {np.__version__}, torchmetrics {version('torchmetrics')}")
    import scipy.linalg  # noqa: F401 -- its OpenBLAS, for the thread report

    blas = ", ".join(f"{name.split('-')[0]} {get()}" for name, get, _ in openblas_libraries()) or "not found"
    frechet_threads = args.frechet_threads if args.frechet_threads > 0 else "library defaults"
    print(f"{os.cpu_count()} CPUs ({affinity} usable), {load_average()}; torch threads {torch.get_num_threads()}, "
          f"OpenBLAS threads: {blas}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
          f"Fréchet section threads: {frechet_threads}")
    print(f"device: {where}")
    print(f"{args.repeats} repeats per CPU row" + (f", {args.cuda_repeats} per CUDA row" if on_cuda else "")
          + f", {args.frechet_repeats} per Fréchet measurement; reporting the {args.stat} run; seed {args.seed}")
    print("NOTE: all networks are RANDOMLY INITIALISED (no weight files are loaded): throughput only, "
          "the features are meaningless.")
    total_start = time.perf_counter()

    # ---- table 1
    if chosen:
        rows: list[Row] = []
        for ext in extractors():
            if ext.key not in chosen:
                continue
            cpu_batch = args.clip_batch if ext.unit == "clips" else args.image_batch
            cuda_batch = args.cuda_clip_batch if ext.unit == "clips" else args.cuda_image_batch
            settings = [(cpu, False, cpu_batch, args.repeats)]
            if args.cpu_bf16:
                settings.append((cpu, True, cpu_batch, args.repeats))
            if on_cuda:
                settings += [(accel, False, cuda_batch, args.cuda_repeats), (accel, True, cuda_batch, args.cuda_repeats)]
            start = time.perf_counter()
            rows += extractor_rows(ext, settings, args)
            print(f"  [{ext.label}: {time.perf_counter() - start:.1f} s]", flush=True)
        print("\n=== feature extractors (random init; items/s = clips/s or images/s; vs base = items/s over the baseline row)")
        print_extractor_table(rows)
        failed = [r for r in rows if r.note.startswith("failed")]
        if not on_cuda:
            print("CUDA rows (fp32, bf16-mixed): skipped (" + (
                "no CUDA device" if not torch.cuda.is_available() else f"--device {args.device}") + ")")
    else:
        failed = []

    loading_table(args.repeats, args.stat)

    # ---- table 2
    results: list[FrechetResult] = []
    if dims:
        start = time.perf_counter()
        results = frechet_rows(dims, args)
        threads = f"{args.frechet_threads} thread(s)" if args.frechet_threads > 0 else "library default threads"
        print(f"\n=== Fréchet distance, float64 statistics, CPU ({threads} for both): eigenvalue route (ours) vs "
              f"scipy.linalg.sqrtm [{time.perf_counter() - start:.1f} s]")
        print_frechet_table(results)

    print(f"\ntotal {time.perf_counter() - total_start:.1f} s; {load_average()} (other processes share these CPUs)")
    if results:
        r = max(results, key=lambda r: r.d)
        verdict = f"{r.ratio:.2f}x faster" if r.ratio >= 1 else f"{1 / r.ratio:.2f}x slower"
        print(f"summary: at d={r.d}, frechet_distance (eigen route) {r.ours_s:.3f} s vs scipy sqrtm {r.scipy_s:.3f} s: "
              f"ours {verdict} (scipy/ours = {r.ratio:.2f}), relative difference {r.rel_diff:.1e}")
    if failed:
        print(f"{len(failed)} extractor row(s) failed (see the note column)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
