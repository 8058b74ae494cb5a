"""Broken files that every consumer of the pipeline must reject with VideoDecodeError."""

from pathlib import Path

import av
import numpy as np


def write_bad_inputs(real_clip: Path, folder: Path) -> dict[str, Path]:
    """Truncated copy, text renamed .mp4, audio-only file and a 0-byte file, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    data = real_clip.read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    text = folder / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 20)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    audio = folder / "audio_only.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (0.1 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)).astype(np.float32)[None]
        for i in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, i : i + 1024].copy(), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return {"truncated": truncated, "text": text, "audio_only": audio, "empty": empty}
