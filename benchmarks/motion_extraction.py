"""Throughput of motion extraction from compressed video, against the decoding limit and alternatives.

Run (from the repository root, in the project's virtualenv)::

    pip install -e ".[bench]"          # opencv-python-headless, motion-vector-extractor
    python benchmarks/motion_extraction.py                       # real clip + generated 1280x720 clip
    python benchmarks/motion_extraction.py --video a.mp4 --video b.mkv --repeats 5

Every input is first re-encoded once with ``lavit.video.transcode_to_mpeg4`` (MPEG-4 Part 2, 6 fps,
GOP 12, 8000 kb/s, no B-frames); rows (a), (b), (d) and (e) all work on that same stream. Each
measurement is warmed up once, then run ``--repeats`` times (``time.perf_counter``; a call shorter
than 0.25 s is looped inside each run); the best run is reported (``--stat median`` for the median).
Farneback is slow, so it is warmed up on one pair and timed ``--flow-repeats`` (default 1) times.

Rows:
  (a) decode only -- the limit: PyAV decodes the MPEG-4 stream (same ``open_video`` settings as
      ``read_motion``), no motion-vector export, no RGB conversion.
  (b) ``lavit.video.read_motion(mpeg4_bytes)``: decode with motion-vector export + dense fields.
  (c) ``lavit.video.extract_clips(original_path)``: the whole preprocessing (in-process transcode,
      motion vectors, keyframe RGB, clip fields). (c') the same with ``frame_size=(64, 64)``: every clip
      frame also converted to RGB, resized and cropped in the same decode pass (the detokenizer's
      input); its note gives the wall-time ratio (c')/(c), measured in the same run. (c'') is (c') with the
      settings before CPU-independent extraction (FFmpeg's SIMD rounding: no MPEG-4 +bitexact / integer DCT,
      plain swscale bicubic); its note gives what the bit-exact paths cost, (c')/(c'').
  (d) OpenCV Farneback dense optical flow (0.5, 3, 15, 3, 5, 1.2, 0) on consecutive grayscale frames
      of the 6 fps stream -- what one would do without motion vectors. Decoding to gray is done
      beforehand and EXCLUDED from the time (flow only), which favours (d).
  (e) ``motion-vector-extractor`` (``mvextractor.videocap.VideoCap``) on the same MPEG-4 file, motion
      vectors only (``set_decode_frames(False)``). (e') is the same with BGR frames decoded (the
      package's default ``read()``). "not installed" when the package is missing.
  (f) the official route: ``ffmpeg -y -i IN -c:v mpeg4 -r 6 -b:v 8000k -g 12 -bf 0 OUT.mp4``
      (subprocess) then (e) on OUT. Skipped when no ``ffmpeg`` binary is on PATH. (f') uses (e').

Columns: frames/s of the 6 fps stream; source seconds processed per wall second; throughput
relative to (a); for (c), speed relative to (f). Acceptance targets, printed at the end:
(b)/(a) >= 0.75, (b)/(d) >= 20, (c)/(f) >= 1.0.

The ffmpeg command-line tool is used here only, as a reference; library code never calls it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from harness import machine_line, measure, print_table, ratio, sample_video

import av  # noqa: E402
import numpy as np  # noqa: E402

from lavit.video import extract_clips, read_motion, transcode_to_mpeg4  # noqa: E402
from lavit.video.pixels import from_rgb  # noqa: E402
from lavit.video.transcode import open_video  # noqa: E402

FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
FFMPEG_OFFICIAL = ["-c:v", "mpeg4", "-r", "6", "-b:v", "8000k", "-g", "12", "-bf", "0"]

FRAME_SIZE = (64, 64)  # row (c'): extract_clips with each clip's frames at this size
TARGETS = (("(b)/(a)", 0.75), ("(b)/(d)", 20.0), ("(c)/(f)", 1.0))


@dataclass
class Row:
    key: str
    label: str
    seconds: float | None = None  # wall seconds of the chosen run
    frames: int = 0  # frames of the 6 fps stream the row processed
    note: str = ""


# ------------------------------------------------------------------------------------ the rows


def decode_only(data: bytes) -> int:
    container, stream = open_video(data)
    try:
        return sum(1 for _ in container.decode(stream))
    finally:
        container.close()


def gray_frames(data: bytes) -> list[np.ndarray]:
    container, stream = open_video(data)
    try:
        return [frame.to_ndarray(format="gray") for frame in container.decode(stream)]
    finally:
        container.close()


def farneback(frames: list[np.ndarray]) -> int:
    import cv2

    for prev, nxt in zip(frames[:-1], frames[1:]):
        cv2.calcOpticalFlowFarneback(prev, nxt, None, *FARNEBACK)
    return len(frames) - 1


def mvextractor_available() -> str | None:
    """None when importable, else the reason."""
    try:
        from mvextractor.videocap import VideoCap  # noqa: F401
    except ImportError as err:
        return f"not installed ({err})"
    return None


def mvextractor_read(path: str, decode_frames: bool) -> int:
    from mvextractor.videocap import VideoCap

    cap = VideoCap()
    if not cap.open(path):
        raise RuntimeError(f"mvextractor could not open {path}")
    cap.set_decode_frames(decode_frames)
    frames = 0
    try:
        while True:
            ok, _frame, _vectors, _type, *_ = cap.read()
            if not ok:
                return frames
            frames += 1
    finally:
        cap.release()


def ffmpeg_transcode(src: Path, out: Path) -> None:
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *FFMPEG_OFFICIAL, str(out)]
    subprocess.run(cmd, check=True)


# --------------------------------------------------------------------------------------- inputs


def synthetic_video(path: Path, width: int, height: int, fps: int, duration: float) -> Path:
    """A 30 fps H.264 clip: camera pan over a texture plus a moving textured block.

    The textures come from ``lavit.video.synthetic.Texture``; frames are integer-offset crops of one
    pre-rendered panorama (rendering every frame analytically would dominate the benchmark's time).
    """
    from lavit.video.synthetic import Texture

    n = int(round(fps * duration))
    pan = (3, 1)  # px per frame: 90 / 30 px/s
    obj_v = (-5, 2)
    pad_x, pad_y = pan[0] * n, pan[1] * n
    background = np.round(Texture(7).grid(np.arange(width + pad_x, dtype=float), np.arange(height + pad_y, dtype=float)))
    background = background.astype(np.uint8)
    obj_h, obj_w = height // 4, width // 6
    block = np.round(Texture(11, min_wavelength=4, max_wavelength=16).grid(np.arange(obj_w, dtype=float), np.arange(obj_h, dtype=float)))
    block = block.astype(np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        stream.thread_type = "FRAME"  # one slice per frame, like typical files (SLICE would split frames)
        for i in range(n):
            x0, y0 = pad_x - pan[0] * i, pad_y - pan[1] * i  # content moves right/down
            img = background[y0 : y0 + height, x0 : x0 + width].copy()
            ox = int((width * 3 // 4 + obj_v[0] * i) % (width - obj_w))
            oy = int((height // 4 + obj_v[1] * i) % (height - obj_h))
            img[oy : oy + obj_h, ox : ox + obj_w] = block
            frame = from_rgb(img, stream.pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def describe(path: Path) -> tuple[float, str]:
    """(duration in seconds, 'WxH, N fps, codec') of the source."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if container.duration:
            duration = container.duration / av.time_base
        else:
            duration = float(stream.duration * stream.time_base)
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        info = f"{stream.codec_context.width}x{stream.codec_context.height}, {rate:g} fps, {stream.codec_context.name}"
    return duration, info


# ---------------------------------------------------------------------------------- one input


@contextlib.contextmanager
def simd_rounding():
    """The settings before CPU-independent extraction: the MPEG-4 encoder without +bitexact / integer DCT and swscale's
    plain bicubic (its SIMD code rounds per CPU). The baseline of what the bit-exact paths cost."""
    from lavit.video import frame_resize, pixels, transcode

    saved = transcode.BITEXACT_OPTIONS, pixels.EXACT_BICUBIC, frame_resize.INTERPOLATION
    transcode.BITEXACT_OPTIONS = {}
    pixels.EXACT_BICUBIC = frame_resize.INTERPOLATION = av.video.reformatter.Interpolation.BICUBIC
    try:
        yield
    finally:
        transcode.BITEXACT_OPTIONS, pixels.EXACT_BICUBIC, frame_resize.INTERPOLATION = saved


def run_input(path: Path, tmp: Path, args) -> tuple[dict[str, Row], float]:
    duration, info = describe(path)
    mpeg4 = transcode_to_mpeg4(path)
    mpeg4_file = tmp / f"{path.stem}.lavit-mpeg4.mp4"
    mpeg4_file.write_bytes(mpeg4)
    n6 = read_motion(mpeg4, keep_intra_frames=False).num_frames
    print(f"\n=== {path.name}: {info}, {duration:.2f} s -> MPEG-4 6 fps: {n6} frames, {len(mpeg4) / 1e6:.2f} MB")

    R, S = args.repeats, args.stat
    rows: dict[str, Row] = {}

    t, frames = measure(lambda: decode_only(mpeg4), R, S)
    rows["a"] = Row("a", "decode only (PyAV, the limit)", t, frames)

    t, video = measure(lambda: read_motion(mpeg4), R, S)
    rows["b"] = Row("b", "read_motion (ours)", t, video.num_frames)

    t, clips = measure(lambda: extract_clips(path), R, S)
    rows["c"] = Row("c", "extract_clips (ours, full)", t, clips.num_frames, f"{len(clips)} clips")
    t, clips = measure(lambda: extract_clips(path, frame_size=FRAME_SIZE), R, S)
    rows["c'"] = Row("c'", f"(c) + frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]}", t, clips.num_frames,
                     f"time {ratio(t, rows['c'].seconds)} of (c)")

    exact = rows["c'"].seconds
    with simd_rounding():
        t, _ = measure(lambda: extract_clips(path, frame_size=FRAME_SIZE), R, S)
    rows["c''"] = Row("c''", "(c') with FFmpeg's SIMD rounding", t, clips.num_frames,
                      f"bit-exact (c') takes {ratio(exact, t)} of this time")

    try:
        import cv2  # noqa: F401

        gray = gray_frames(mpeg4)
        if args.flow_frames:
            gray = gray[: args.flow_frames + 1]
        t, pairs = measure(lambda: farneback(gray), max(1, min(R, args.flow_repeats)), S, warmup=lambda: farneback(gray[:2]))
        rows["d"] = Row("d", "Farneback flow (OpenCV)", t, pairs, "flow only, decode excluded")
    except ImportError:
        rows["d"] = Row("d", "Farneback flow (OpenCV)", note="not installed (opencv-python-headless)")

    missing = mvextractor_available()
    if missing is None:
        t, frames = measure(lambda: mvextractor_read(str(mpeg4_file), False), R, S)
        rows["e"] = Row("e", "mvextractor, vectors only", t, frames)
        t, frames = measure(lambda: mvextractor_read(str(mpeg4_file), True), R, S)
        rows["e'"] = Row("e'", "mvextractor + BGR frames", t, frames)
    else:
        rows["e"] = Row("e", "mvextractor, vectors only", note=missing)
        rows["e'"] = Row("e'", "mvextractor + BGR frames", note=missing)

    official = tmp / f"{path.stem}.ffmpeg-mpeg4.mp4"
    if shutil.which("ffmpeg") is None:
        for key, label in (("f", "ffmpeg CLI + (e) (official)"), ("f'", "ffmpeg CLI + (e')")):
            rows[key] = Row(key, label, note="skipped: no ffmpeg binary on PATH")
    elif missing is not None:
        for key, label in (("f", "ffmpeg CLI + (e) (official)"), ("f'", "ffmpeg CLI + (e')")):
            rows[key] = Row(key, label, note="skipped: mvextractor not installed")
    else:
        for key, label, rgb in (("f", "ffmpeg CLI + (e) (official)", False), ("f'", "ffmpeg CLI + (e')", True)):

            def official_route(rgb=rgb):
                ffmpeg_transcode(path, official)
                return mvextractor_read(str(official), rgb)

            t, frames = measure(official_route, R, S)
            rows[key] = Row(key, label, t, frames)

    print_rows(rows, duration)
    return rows, duration


def fps(row: Row) -> float | None:
    return row.frames / row.seconds if row.seconds else None


def src_speed(row: Row, duration: float, n6: int) -> float | None:
    """Source seconds per wall second; per-frame rows are scaled to the whole 6 fps stream."""
    if not row.seconds:
        return None
    return duration * (row.frames / n6) / row.seconds if n6 else None


def print_rows(rows: dict[str, Row], duration: float) -> None:
    n6 = rows["b"].frames
    a = fps(rows["a"])
    f = rows.get("f")
    table = []
    for row in rows.values():
        if row.seconds is None:
            table.append([f"({row.key})", row.label, "-", "-", "-", "-", "-", "-", row.note])
            continue
        vs_f = ratio(f.seconds, row.seconds) if row.key == "c" and f and f.seconds else "-"
        table.append([f"({row.key})", row.label, row.frames, f"{row.seconds:.3f}", f"{fps(row):.1f}",
                      f"{src_speed(row, duration, n6):.1f}", ratio(fps(row), a), vs_f, row.note])
    print_table(["row", "method", "frames", "wall s", "frames/s", "src-s/wall-s", "vs (a)", "vs (f)", "note"], table)


def ratios(rows: dict[str, Row]) -> dict[str, float | None]:
    def ratio(x: str, y: str) -> float | None:
        fx, fy = fps(rows[x]), fps(rows[y])
        return fx / fy if fx and fy else None

    cf = rows["f"].seconds / rows["c"].seconds if rows["f"].seconds and rows["c"].seconds else None
    return {"(b)/(a)": ratio("b", "a"), "(b)/(d)": ratio("b", "d"), "(c)/(f)": cf}


# ----------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", action="append", type=Path, help="input video (repeatable); default: real clip + synthetic")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement, after one warm-up (default 3)")
    parser.add_argument("--stat", choices=("best", "median"), default="best", help="which run to report (default best)")
    parser.add_argument("--synthetic", default="1280x720", help="WxH of the generated input (default 1280x720; 'none' to skip)")
    parser.add_argument("--synthetic-seconds", type=float, default=10.0, help="duration of the generated 30 fps input (default 10)")
    parser.add_argument("--flow-frames", type=int, default=0, help="limit Farneback to the first N flow pairs (0 = all)")
    parser.add_argument("--flow-repeats", type=int, default=1, help="timed Farneback runs (default 1: it is slow)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="lavit-bench-") as tmpdir:
        tmp = Path(tmpdir)
        videos = list(args.video or [])
        if not videos:
            real = sample_video()
            if real is not None:
                videos.append(real)
            else:
                print("note: the sample video (shared/data beside the checkout, or $LAVIT_SAMPLE_VIDEO) was not found; synthetic input only")
            if args.synthetic.lower() != "none":
                w, h = (int(v) for v in args.synthetic.lower().split("x"))
                start = time.perf_counter()
                videos.append(synthetic_video(tmp / f"synthetic_{w}x{h}.mp4", w, h, 30, args.synthetic_seconds))
                print(f"generated {videos[-1].name} in {time.perf_counter() - start:.1f} s")

        print(machine_line())
        print(f"PyAV {av.__version__} (FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec), "
              f"{args.repeats} repeats, reporting the {args.stat} run")
        ffmpeg = shutil.which("ffmpeg")
        print(f"ffmpeg binary: {ffmpeg or 'not found (row (f) skipped)'}; "
              f"mvextractor: {mvextractor_available() or 'installed'}")

        summary = []
        for video in videos:
            rows, _ = run_input(video, tmp, args)
            summary.append((video.name, ratios(rows)))

    print("\n=== acceptance ratios (throughput of the first over the second; (c)/(f) = time (f) / time (c))")
    width = max(len(name) for name, _ in summary) + 2
    print(f"{'input':<{width}}" + "".join(f"{name + ' >= ' + format(target, 'g'):>18}" for name, target in TARGETS))
    ok = True
    for name, values in summary:
        cells = []
        for key, target in TARGETS:
            v = values[key]
            if v is None:
                cells.append(f"{'n/a':>18}")
                continue
            passed = v >= target
            ok &= passed
            cells.append(f"{v:>12.2f} {'PASS' if passed else 'FAIL':>5}")
        print(f"{name:<{width}}" + "".join(cells))
    print("all targets met" if ok else "some targets missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
