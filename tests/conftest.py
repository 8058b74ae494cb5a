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


def pytest_collection_modifyitems(items):
    """Order for ``pytest -n 2 --dist worksteal`` (make test): each half of the collection (what each worker starts
    with) begins with every other slow test, demo trainings first, so the two longest queues run side by side from the
    start; the fast tests fill the rest and are stolen by whichever worker runs dry. In collection order a long test
    collected last ran alone at the end while the other worker idled (seen: 4 minutes of one idle core)."""
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    slow.sort(key=lambda item: "demo" not in item.name)  # stable
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    first, second = slow[0::2], slow[1::2]
    cut = max(0, len(items) // 2 - len(first))
    items[:] = first + fast[:cut] + second + fast[cut:]
