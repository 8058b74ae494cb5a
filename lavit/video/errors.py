"""The one exception the video pipeline raises for bad input."""

from __future__ import annotations

import os


class VideoDecodeError(ValueError):
    """A file could not be turned into keyframes and motion.

    Raised for unreadable, non-video, audio-only, zero-frame, truncated or too-short input.
    ``path`` names the file (or ``"<bytes>"`` for in-memory input) and ``reason`` says what is wrong.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = str(path) if path is not None else "<bytes>"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep path/reason when crossing DataLoader worker processes
        return (type(self), (self.path, self.reason))
