"""Procedurally rendered videos with known motion, written through a real encoder.

A scene is a camera pan over an analytic texture plus one textured object moving on its own.
Textures are sums of random sinusoids evaluated at continuous coordinates, so sub-pixel motion is
rendered exactly (no resampling blur). Motion is given in pixels per second, so the same scene can
be written at any frame rate, or with irregular timestamps, and its per-frame truth computed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lavit.video.pixels import from_rgb


@dataclass
class Texture:
    """A smooth random RGB texture: ``value(x, y)`` is defined for any real coordinates."""

    seed: int
    waves: int = 24
    min_wavelength: float = 6.0
    max_wavelength: float = 48.0
    _params: tuple = field(init=False, repr=False)

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        wavelength = np.exp(rng.uniform(np.log(self.min_wavelength), np.log(self.max_wavelength), self.waves))
        theta = rng.uniform(0, np.pi, self.waves)
        k = 2 * np.pi / wavelength
        self._params = (
            k * np.cos(theta),
            k * np.sin(theta),
            rng.uniform(0, 2 * np.pi, (3, self.waves)),
            rng.uniform(0.5, 1.0, (3, self.waves)),
            rng.uniform(40, 215, 3),
        )

    def grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """(len(ys), len(xs), 3) float RGB in [0, 255] on the grid of real coordinates ``xs`` x ``ys``.

        Each wave sin(kx x + ky y + p) splits into sin(kx x) cos(ky y + p) + cos(kx x) sin(ky y + p),
        so the whole grid is two matrix products per channel.
        """
        kx, ky, phase, amp, base = self._params
        ax = np.outer(xs, kx)  # (W, waves)
        sx, cx = np.sin(ax), np.cos(ax)
        out = np.empty((len(ys), len(xs), 3))
        for c in range(3):
            by = np.outer(ys, ky) + phase[c]  # (H, waves)
            out[..., c] = (np.cos(by) * amp[c]) @ sx.T + (np.sin(by) * amp[c]) @ cx.T
        out = out / amp.sum(1) * 3.0 * 40.0 + base
        return np.clip(out, 0, 255)


@dataclass
class MovingObject:
    """A textured rectangle whose top-left corner moves from ``position`` at ``velocity`` px/s."""

    size: tuple[int, int]  # (height, width)
    position: tuple[float, float]  # (x, y) at t = 0
    velocity: tuple[float, float]  # (vx, vy) in px/s
    texture: Texture


@dataclass
class Scene:
    """Camera pan over a background, plus optional objects and texture cuts.

    ``pan`` is the apparent motion of the background in px/s (content moving right = +x).
    ``cuts`` are times (s) at which the background switches to a new texture (a scene change).
    """

    height: int
    width: int
    pan: tuple[float, float]
    background: Texture
    objects: list[MovingObject] = field(default_factory=list)
    cuts: list[float] = field(default_factory=list)

    def render(self, t: float) -> np.ndarray:
        """(H, W, 3) uint8 frame at time ``t`` seconds."""
        xs, ys = np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64)
        cut = sum(t >= c for c in self.cuts)
        bg = self.background if cut == 0 else Texture(self.background.seed + 1000 * cut)
        img = bg.grid(xs - self.pan[0] * t, ys - self.pan[1] * t)
        for obj in self.objects:
            ox = obj.position[0] + obj.velocity[0] * t
            oy = obj.position[1] + obj.velocity[1] * t
            cols = np.flatnonzero((xs >= ox) & (xs < ox + obj.size[1]))
            rows = np.flatnonzero((ys >= oy) & (ys < oy + obj.size[0]))
            if len(cols) and len(rows):
                img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = obj.texture.grid(xs[cols] - ox, ys[rows] - oy)
        return np.round(img).astype(np.uint8)


_PIX_FMT = {"mjpeg": "yuvj420p", "prores_ks": "yuv422p10le"}  # formats these encoders take


def write_video(
    scene: Scene,
    path: str | os.PathLike,
    *,
    fps: float = 6.0,
    duration: float | None = None,
    times: list[float] | None = None,
    codec: str = "libx264",
    quality: int = 12,
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    rotation: int = 0,
) -> Path:
    """Encode a scene to ``path`` (container from the suffix, e.g. .mp4 / .mkv / .avi / .mov).

    Frames are rendered at ``times`` (seconds; irregular times give a variable-frame-rate file) or
    every ``1 / fps`` for ``duration`` seconds. ``quality`` is the x264 CRF (or the qscale of other
    encoders). ``pix_fmt`` defaults to one the codec takes (yuvj420p for mjpeg, yuv422p10le for
    prores_ks, else yuv420p); ``options`` are encoder options on top of the defaults (e.g.
    ``{"g": "5"}`` for a GOP of 5). ``rotation`` writes a display matrix (degrees counter-clockwise,
    as ``av.VideoFrame.rotation`` reads it back): the frames are stored as rendered, a player shows
    them rotated.
    """
    if times is None:
        if duration is None:
            raise ValueError("give either times or duration")
        times = [i / fps for i in range(int(round(duration * fps)))]
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    # AVI stores frame indices, not timestamps: its time base must be the frame rate
    time_base = 1 / rate if path.suffix.lower() == ".avi" else Fraction(1, 6000)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = scene.width, scene.height
        stream.pix_fmt = pix_fmt or _PIX_FMT.get(codec, "yuv420p")
        stream.codec_context.time_base = time_base
        if codec == "libx264":
            stream.options = {"crf": str(quality), "preset": "veryfast", "bf": "0", **(options or {})}
        else:
            stream.codec_context.qscale = quality
            stream.options = dict(options or {})
        if rotation:
            stream.set_display_rotation(rotation)
        for t in times:
            frame = from_rgb(scene.render(t), stream.pix_fmt)
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def random_scene(
    rng: np.random.Generator, height: int = 192, width: int = 320, max_speed: float = 30.0, max_pan_speed: float | None = None
) -> tuple[Scene, str]:
    """A random pan + object scene and a templated caption describing it.

    Each velocity component is uniform in +-``max_speed`` px/s for the object and +-``max_pan_speed`` (default
    ``max_speed``; 0 = a still camera) for the pan."""
    max_pan_speed = max_speed if max_pan_speed is None else max_pan_speed
    pan = tuple(float(v) for v in rng.uniform(-max_pan_speed, max_pan_speed, 2))
    obj_h, obj_w = int(rng.integers(40, 80)), int(rng.integers(40, 100))
    velocity = tuple(float(v) for v in rng.uniform(-max_speed, max_speed, 2))
    obj = MovingObject(
        size=(obj_h, obj_w),
        position=(float(rng.uniform(0, width - obj_w)), float(rng.uniform(0, height - obj_h))),
        velocity=velocity,
        texture=Texture(int(rng.integers(1 << 30)), min_wavelength=4, max_wavelength=16),
    )
    scene = Scene(height, width, pan, Texture(int(rng.integers(1 << 30))), [obj])
    camera = f"while the camera pans {_direction(tuple(-v for v in pan))}" if any(pan) else "over a still background"
    caption = f"a textured block moves {_direction(velocity)} {camera}"
    return scene, caption


def _direction(v: tuple[float, float]) -> str:
    horizontal = "right" if v[0] > 0 else "left"
    vertical = "down" if v[1] > 0 else "up"
    if abs(v[0]) > 2 * abs(v[1]):
        return horizontal
    if abs(v[1]) > 2 * abs(v[0]):
        return vertical
    return f"{vertical} and {horizontal}"
