import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_CLIP = SHARED / "data" / "msrvtt_video7013.mp4"

# Keep each test process to its share of the cores when pytest-xdist runs two workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def real_clip() -> Path:
    if not REAL_CLIP.is_file():
        pytest.fail(f"sample video missing: {REAL_CLIP} (the repository expects ../shared beside it)")
    return REAL_CLIP
