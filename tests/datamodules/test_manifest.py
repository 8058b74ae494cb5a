import json

import pytest

from datamodules.manifest import read_manifest


def test_csv_jsonl_and_webvid(tmp_path):
    (tmp_path / "a.csv").write_text("video,caption\nclips/x.mp4,a dog runs\n/abs/y.mp4,\"a cat, sleeping\"\n")
    recs = read_manifest(tmp_path / "a.csv")
    assert [r.path for r in recs] == [tmp_path / "clips/x.mp4", tmp_path / "/abs/y.mp4"]
    assert [r.caption for r in recs] == ["a dog runs", "a cat, sleeping"]
    assert [r.video_id for r in recs] == ["x", "y"]

    (tmp_path / "b.jsonl").write_text(json.dumps({"path": "v1.webm", "text": "waves", "id": 7}) + "\n\n")
    (rec,) = read_manifest(tmp_path / "b.jsonl", video_root=tmp_path / "root")
    assert rec.path == tmp_path / "root" / "v1.webm" and rec.caption == "waves" and rec.video_id == "7"

    (tmp_path / "webvid.csv").write_text("videoid,contentUrl,duration,page_dir,name\n1053841541,http://x,PT00H00M17S,006001_006050,Aerial shot of a lake\n")
    (rec,) = read_manifest(tmp_path / "webvid.csv", video_root="/data/webvid")
    assert str(rec.path) == "/data/webvid/006001_006050/1053841541.mp4"
    assert rec.caption == "Aerial shot of a lake" and rec.video_id == "1053841541"


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("url,label\nx,y\n")
    with pytest.raises(ValueError, match=r"bad.csv.*found columns \['url', 'label'\]"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"video": "a.mp4", "caption": "x"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_manifest(tmp_path / "bad.jsonl")
    (tmp_path / "m.parquet").write_text("")
    with pytest.raises(ValueError, match="unknown manifest format"):
        read_manifest(tmp_path / "m.parquet")
