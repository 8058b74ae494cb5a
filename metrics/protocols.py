"""Named evaluation protocols for the video metrics (docs/spec.md §6).

Each preset fixes what papers silently disagree on: covariance normalisation, clip length, which
frames, resize rule and input scaling. Pass ``protocol=`` to a metric; every field can still be
overridden by the metric's own arguments.

================  ==============================  =================================================
protocol          covariance                      frames / resize / scaling
================  ==============================  =================================================
``stylegan-v``    biased (/N), as StyleGAN-V      first 16 frames, bilinear to 224x224
                  (``np.cov(..., bias=True)``     (align_corners=False), uint8 -> [-1, 1] by
                  in its FVD)                     ``v / 127.5 - 1``
``tf``            unbiased (/(N-1)), as the TF    same frames, resize and scaling as the TF FVD
                  original FVD (Unterthiner)      (``tf.image.resize_bilinear``)
================  ==============================  =================================================

Video Inception Score (C3D, TGAN protocol): central 16 frames at 112x112, 10 splits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoProtocol:
    unbiased: bool
    num_frames: int = 16
    frames: str = "first"  # "first" or "center"
    size: int = 224


PROTOCOLS: dict[str, VideoProtocol] = {
    "stylegan-v": VideoProtocol(unbiased=False),
    "tf": VideoProtocol(unbiased=True),
}


def get_protocol(name: str) -> VideoProtocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]
