"""Sweep configs and prompt sets: strict keys, the grid, protocol defaults, errors before any generation."""

import json
import re
from pathlib import Path

import pytest

from datamodules.prompts import PendingShardSampler, PromptDataset
from lavit.sweeps import item_seed, load_sweep_config, read_prompts, sweep_config_from_dict
from lightning_modules.cli import lavit_main
from lightning_modules.sweep import run_sweep
from tests.sweeps.conftest import sweep_dict, write_sweep


def test_grid_is_the_cartesian_product(sweep_data, tmp_path):
    cfg = sweep_config_from_dict(sweep_dict(sweep_data, tmp_path, grid={
        "checkpoint": ["a/demo.yaml", "b/demo.yaml"], "keyframe_guidance": [3, 4.5], "motion_guidance": 7, "seed": [0, 1]}))
    points = cfg.points()
    assert len(points) == 8 and len({p.id for p in points}) == 8
    assert points[0].id == "demo0_kg3_seed0" and points[-1].id == "demo1_kg4.5_seed1"
    assert points[0].overrides() == {"keyframe_guidance": 3.0, "motion_guidance": 7.0}


def test_protocol_defaults(sweep_data, tmp_path):
    base = sweep_dict(sweep_data, tmp_path)
    msrvtt = sweep_config_from_dict({**base, "protocol": "msrvtt"})
    assert (msrvtt.num_videos, msrvtt.videos_per_prompt) == (2990, 1)
    ucf = sweep_config_from_dict({**base, "protocol": "ucf101"})
    assert (ucf.num_videos, ucf.videos_per_prompt) == (2020, 20)
    long = sweep_config_from_dict({**base, "protocol": "long_video", "video": {}, "real": "tail"})
    assert (long.num_frames, long.num_clips, long.real_is_tail) == (64, 3, True)
    with pytest.raises(ValueError, match="the msrvtt protocol needs 'real'"):
        sweep_config_from_dict({**base, "protocol": "msrvtt", "real": None})


@pytest.mark.parametrize("change, key", [({"guidance": 3}, "'guidance'"), ({"grid": {"cfg": [1]}}, "'grid.cfg'"),
                                         ({"video": {"frames": 16}}, "'video.frames'")])
def test_unknown_key_names_key_file_and_allowed(sweep_data, tmp_path, change, key):
    config = write_sweep(sweep_data, tmp_path / "out", tmp_path / "bad.yaml", **change)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'bad.yaml'}: unknown key {key}; allowed.*: .*"):
        load_sweep_config(config)


def test_missing_inputs_fail_before_generation(sweep_data, tmp_path, capsys):
    out = tmp_path / "out"
    missing_prompts = write_sweep(sweep_data, out, tmp_path / "p.yaml", prompts={"file": str(tmp_path / "nope.txt")})
    with pytest.raises(FileNotFoundError, match="prompt file not found: .*nope.txt"):
        run_sweep(missing_prompts, progress=False)
    missing_real = write_sweep(sweep_data, out, tmp_path / "r.yaml", real=str(tmp_path / "real_nope"))
    with pytest.raises(FileNotFoundError, match="real videos not found: .*real_nope"):
        run_sweep(missing_real, progress=False)
    missing_ckpt = write_sweep(sweep_data, out, tmp_path / "c.yaml", generator=None,
                               grid={"checkpoint": [str(tmp_path / "pipelines" / "demo.yaml")]})
    with pytest.raises(FileNotFoundError, match="pipeline config not found: .*pipelines/demo.yaml"):
        run_sweep(missing_ckpt, progress=False)
    assert not out.exists()  # nothing generated, not even a folder
    # the command line: one line, exit 2, no traceback
    assert lavit_main(["sweep", "-c", str(missing_prompts)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lavit sweep: error: ") and "nope.txt" in err and err.count("\n") == 1 and "Traceback" not in err
    assert lavit_main(["sweep", "-c", str(write_sweep(sweep_data, out, tmp_path / "k.yaml", seeds=[1]))]) == 2
    assert "unknown key 'seeds'" in capsys.readouterr().err


def test_prompt_files(tmp_path):
    (tmp_path / "msrvtt.csv").write_text("video_id,sentence\nvideo7020,a man sings\nvideo7021,a dog runs\n")
    items = read_prompts(tmp_path / "msrvtt.csv")
    assert [(i.index, i.caption, i.video_id) for i in items] == [(0, "a man sings", "video7020"), (1, "a dog runs", "video7021")]
    (tmp_path / "p.jsonl").write_text(json.dumps({"caption": "a cat"}) + "\n\n" + json.dumps({"caption": "a car"}) + "\n")
    assert [i.video_id for i in read_prompts(tmp_path / "p.jsonl")] == ["00000", "00001"]
    (tmp_path / "ucf.txt").write_text("ApplyEyeMakeup\n\nArchery\n")
    ucf = read_prompts(tmp_path / "ucf.txt", videos_per_prompt=20, template="a video of {}")
    assert len(ucf) == 40 and ucf[19].caption == "a video of ApplyEyeMakeup" and ucf[20].caption == "a video of Archery"
    assert ucf[0].video_id == "00000_00" and ucf[39].video_id == "00001_19" and [i.index for i in ucf] == list(range(40))
    assert len(read_prompts(tmp_path / "ucf.txt", videos_per_prompt=20, num_videos=25)) == 25
    with pytest.raises(ValueError, match=r"40 videos \(2 prompts x 20\) but the protocol needs 2020"):
        read_prompts(tmp_path / "ucf.txt", videos_per_prompt=20, num_videos=2020)
    (tmp_path / "empty.csv").write_text("caption\nfine\n\"  \"\n")
    with pytest.raises(ValueError, match="empty.csv: line 3 has an empty prompt"):
        read_prompts(tmp_path / "empty.csv")
    (tmp_path / "nocap.csv").write_text("video,url\na.mp4,x\n")
    with pytest.raises(ValueError, match="need a caption column"):
        read_prompts(tmp_path / "nocap.csv")


def test_shards_skip_done_items_and_seeds_do_not_depend_on_shards(tmp_path):
    (tmp_path / "p.txt").write_text("".join(f"prompt {k}\n" for k in range(7)))
    dataset = PromptDataset(read_prompts(tmp_path / "p.txt"))
    done = {1, 4}
    shards = [list(PendingShardSampler(dataset, lambda item: item.index in done, num_replicas=2, rank=r)) for r in range(2)]
    assert shards == [[0, 2, 6], [3, 5]]  # disjoint, every pending item once, done ones skipped
    one = PendingShardSampler(dataset, lambda item: item.index in done, limit=3)  # one process: its shard is everything
    assert list(one) == [0, 2, 3] and len(one) == 3
    seeds = [item_seed(7, i) for i in range(7)]
    assert len(set(seeds)) == 7 and seeds == [item_seed(7, i) for i in range(7)] and item_seed(8, 0) != seeds[0]


SWEEPS = sorted((Path(__file__).resolve().parents[2] / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("config", SWEEPS, ids=lambda p: p.stem)
def test_shipped_sweep_configs_parse(config, tmp_path, monkeypatch):
    for name in set(re.findall(r"\$\{oc\.env:(\w+)", config.read_text())):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    cfg = load_sweep_config(config)
    assert cfg.points() and set(cfg.metrics) >= set().union(*cfg.reference.values())
    assert str(tmp_path) not in str(cfg.output_dir)


def test_shipped_sweeps_follow_the_papers_protocols(monkeypatch, tmp_path):
    for name in ("MSRVTT_CAPTIONS", "MSRVTT_VIDEOS", "CLIP_WEIGHTS", "UCF101_PROMPTS", "UCF101_VIDEOS", "LAVIT_WEIGHTS_DIR",
                 "EVALCRAFTER_PROMPTS"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    root = SWEEPS[0].parent
    msrvtt = load_sweep_config(root / "msrvtt.yaml")
    assert msrvtt.num_videos == 2990 and msrvtt.reference == {"Video-LaVIT": {"clipsim": 0.3012, "fvd": 188.36, "fid": 11.27}}
    ucf = load_sweep_config(root / "ucf101.yaml")
    assert (ucf.videos_per_prompt, ucf.num_videos) == (20, 2020)
    long = load_sweep_config(root / "long_video.yaml")
    assert (long.num_frames, long.num_clips, long.real_is_tail, long.eval_num_frames) == (64, 3, True, 16)
    demo = load_sweep_config(root / "demo.yaml")
    assert len(demo.points()) == 2 and demo.grid["keyframe_guidance"] == [3.0, 5.0]


def test_unset_environment_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MSRVTT_CAPTIONS", raising=False)
    with pytest.raises(ValueError, match=r"msrvtt.yaml: .*MSRVTT_CAPTIONS"):
        load_sweep_config(SWEEPS[0].parent / "msrvtt.yaml")


def test_checkpoint_a_pipeline_config_names_but_is_missing(sweep_data, tmp_path):
    """The pipeline config exists; a checkpoint it names does not: the error names it, before any generation."""
    from lavit.pipelines.config import REQUIRED_CHECKPOINTS as names
    (tmp_path / "pipeline.yaml").write_text("checkpoints:\n" + "".join(f"  {n}: {tmp_path / n}\n" for n in names))
    config = write_sweep(sweep_data, tmp_path / "out", tmp_path / "s.yaml", generator=None,
                         grid={"checkpoint": [str(tmp_path / "pipeline.yaml")]})
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "lm")):
        run_sweep(config, progress=False)
    assert not (tmp_path / "out").exists()
