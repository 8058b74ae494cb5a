"""The benchmarks run (smallest settings) and print ratios against a baseline of the same run."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(*args: str) -> str:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=BENCHMARKS.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_motion_tokenizer_benchmark_prints_ratio_against_naive():
    out = _run(str(BENCHMARKS / "motion_tokenizer.py"), "--config", "tiny", "--repeats", "1")
    naive = [line for line in out.splitlines() if line.startswith("forward") and " naive " in line]
    assert naive and naive[0].split()[7] == "1.00x", out  # the baseline row against itself


def test_harness_measure_and_table(capsys):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from harness import measure, print_table, ratio
    finally:
        sys.path.remove(str(BENCHMARKS))
    calls = []
    seconds, result = measure(lambda: calls.append(1) or len(calls), repeats=2, min_time=0.0)
    assert result == len(calls) == 3 and seconds >= 0  # one warm-up, then one call per timed run
    assert ratio(3.0, 2.0) == "1.50x" and ratio(1.0, None) == ""
    print_table(["name", "x"], [["a", "1.5x"], ["bb", "10"]])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "x"] and lines[2].endswith("1.5x") and lines[3].endswith("  10")


@pytest.mark.slow
def test_video_detokenizer_benchmark_checks_equivalence_and_prints_overhead():
    out = _run(str(BENCHMARKS / "video_detokenizer.py"), "--configs", "tiny", "--frames", "2", "--size", "64x64", "--steps", "1",
               "--repeats", "1", "--paper", "--paper-config", "tiny", "--paper-size", "64x64", "--paper-frames", "2",
               "--paper-steps", "1", "--paper-vae", "tiny")
    assert out.count("ours == stock == stock-T on constant motion features") == 2, out
    assert "routing overhead, ours / stock - 1" in out and "training step:" in out, out


@pytest.mark.slow
def test_keyframe_tokenizer_benchmark_checks_sdpa_and_prints_ratio_against_exact():
    out = _run(str(BENCHMARKS / "keyframe_tokenizer.py"), "--quick")
    assert "keep masks identical" in out and "paper size: skipped (--quick)" in out, out
    for group in ("select+merge+vq", "tokenize"):
        exact = [line.split() for line in out.splitlines() if line.startswith(group) and " exact " in line]
        assert exact and exact[0][8] == "1.00x", out  # the baseline row against itself
    assert [line for line in out.splitlines() if line.startswith("encoder") and " tiny " in line], out


@pytest.mark.slow
def test_preprocess_benchmark_prints_clip_rates_and_streaming_ratio_against_decoding():
    out = _run(str(BENCHMARKS / "preprocess.py"), "--quick")
    baseline = [line.split() for line in out.splitlines() if line.startswith("(0)")]
    assert len(baseline) == 2 and all(row[-1] == "1.00x" for row in baseline), out  # the baselines against themselves
    assert len([line for line in out.splitlines() if line.startswith("(a)")]) == 2, out
    decoding = [line.split() for line in out.splitlines() if line.startswith("decoding (VideoTextDataModule)")]
    streaming = [line.split() for line in out.splitlines() if line.startswith("streaming (StreamingClipDataModule)")]
    assert [row[-1] for row in decoding] == ["1.00x", "1.00x"] and len(streaming) == 2, out
    methods = [line.split(": ")[-1] for line in out.splitlines() if line.startswith("multiprocessing start method before")]
    assert len(methods) == 2 and methods[0] == methods[1], out  # litdata.optimize's "spawn" was undone
    assert "streaming / decoding batches/s:" in out, out


@pytest.mark.slow
def test_multimodal_lm_benchmark_prints_mfu_ratios_and_constraint_overhead():
    out = _run(str(BENCHMARKS / "multimodal_lm.py"), "--quick")
    assert "matmul peak fp32" in out and "N = non-embedding + head = " in out, out
    for group, baseline in (("train", "eager"), ("generate", "none")):
        rows = [row for row in (line.split() for line in out.splitlines()) if row[:1] == [group] and row[3] in ("cpu", "cuda")]
        base = [row for row in rows if row[2] == baseline]
        assert len(rows) == 2 * len(base) and base and all(row[9] == "1.00x" for row in base), out  # baselines against themselves
    mfu = [float(row[10].rstrip("%")) for row in (line.split() for line in out.splitlines()) if row[:1] == ["train"] and row[3] in ("cpu", "cuda")]
    assert len(mfu) >= 2 and all(0 < m < 100 for m in mfu), out
    overhead = [line for line in out.splitlines() if line.startswith("constraint overhead")]
    assert len(overhead) >= 2 and all("% budget)" in line for line in overhead), out
    assert "bf16 (training MFU, peak memory, generation): skipped (--quick)" in out, out


@pytest.mark.slow
def test_pipelines_benchmark_prints_each_stage_share_of_the_total():
    out = _run(str(BENCHMARKS / "pipelines.py"), "--quick")
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("lm", "keyframe_detokenizer", "motion_decode", "video_detokenizer",
                                                    "vae_decode", "other", "total")}
    assert len(rows) == 7 and rows["total"][2] == "100.0%", out
    shares = sum(float(rows[name][2].rstrip("%")) for name in rows if name != "total")
    assert abs(shares - 100.0) < 0.6, out  # the stages + other add up to the total measured in the same run
