"""The pipeline gives the same bytes on every CPU: FFmpeg's SIMD code forced off gives what the SIMD code gives.

libavutil's av_force_cpu_flags(0) makes every FFmpeg library of the process take its C code, as on a CPU with no SIMD
at all. Without the exact swscale flags (lavit.video.pixels) and the MPEG-4 encoder's bitexact options, the synthetic
H.264 source, the resized frames and the motion vectors all differed between the two runs.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

ROOT = Path(__file__).resolve().parents[2]

_RUN = r"""
import ctypes, hashlib, json, sys
import numpy as np
if sys.argv[1] != "-":
    ctypes.CDLL(sys.argv[1]).av_force_cpu_flags(ctypes.c_int(0))
from lavit.video import extract_clips
from lavit.video.synthetic import random_scene, write_video
scene, _ = random_scene(np.random.default_rng(3), max_pan_speed=20.0)
path = write_video(scene, sys.argv[2], duration=3.0)
clips = extract_clips(path, frame_size=(96, 160), normalization="pixels", field_size=(12, 20), sampling="dense")
md5 = lambda b: hashlib.md5(b).hexdigest()
print(json.dumps({"source": md5(open(path, "rb").read()), "frames": md5(clips.frames.numpy().tobytes()),
                  "motion": md5(clips.motion.numpy().tobytes()), "moving": float(np.abs(clips.motion.numpy()).mean())}))
"""


def _libavutil() -> str | None:
    """The libavutil that PyAV's wheel bundles (av.libs beside the package), or None for a build on system FFmpeg."""
    found = glob.glob(os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs", "libavutil*.so*"))
    return found[0] if found else None


@pytest.mark.skipif(_libavutil() is None, reason="PyAV is not the wheel with bundled FFmpeg libraries")
def test_source_frames_and_motion_are_identical_with_simd_forced_off(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = []
    for lib in ("-", _libavutil()):
        out = subprocess.run([sys.executable, "-c", _RUN, lib, str(tmp_path / f"v{len(runs)}.mp4")], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    simd, plain = runs
    assert simd["moving"] > 0.5  # a scene that moves, so the motion vectors are not trivially equal
    assert simd == plain
