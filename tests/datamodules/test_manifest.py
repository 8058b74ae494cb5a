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


def test_excel_utf8_bom_is_accepted(tmp_path):
    # Excel's "CSV UTF-8" starts with a byte-order mark; the first column must still be "video"
    (tmp_path / "excel.csv").write_bytes("video,caption\nx.mp4,café au lait\n".encode("utf-8-sig"))
    (rec,) = read_manifest(tmp_path / "excel.csv")
    assert rec.path == tmp_path / "x.mp4" and rec.caption == "café au lait"
    (tmp_path / "bom.jsonl").write_bytes((json.dumps({"video": "y.mp4", "caption": "c"}) + "\n").encode("utf-8-sig"))
    assert read_manifest(tmp_path / "bom.jsonl")[0].video_id == "y"


def test_non_utf8_manifest_names_file_line_and_encoding(tmp_path):
    (tmp_path / "latin1.csv").write_bytes("video,caption\na.mp4,plain\nb.mp4,café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv: line 3 is not UTF-8 \(byte 0xe9 at column 10\)"):
        read_manifest(tmp_path / "latin1.csv")


def test_json_array_manifest_and_non_object_lines(tmp_path):
    rows = [{"video": "a.mp4", "caption": "one"}, {"video": "b.mp4", "caption": "two"}]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    assert [r.caption for r in read_manifest(tmp_path / "m.json")] == ["one", "two"]
    (tmp_path / "array.jsonl").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"array.jsonl: line 1 is a JSON list, not an object \(a JSON array belongs in a .json file\)"):
        read_manifest(tmp_path / "array.jsonl")
    (tmp_path / "mixed.jsonl").write_text(json.dumps(rows[0]) + '\n"just a string"\n')
    with pytest.raises(ValueError, match="mixed.jsonl: line 2 is a JSON str, not an object"):
        read_manifest(tmp_path / "mixed.jsonl")
    (tmp_path / "obj.json").write_text(json.dumps({"videos": rows}))
    with pytest.raises(ValueError, match="obj.json: a .json manifest must hold an array of objects, got a JSON dict"):
        read_manifest(tmp_path / "obj.json")
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match="lines.json: not JSON .*belongs in a .jsonl file"):
        read_manifest(tmp_path / "lines.json")


@pytest.mark.parametrize("name, text", [("empty.csv", ""), ("header.csv", "video,caption\n"), ("blank.jsonl", "\n\n"), ("empty.json", "[]")])
def test_empty_or_header_only_manifest_is_an_error(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=f"{name}: the manifest has no rows"):
        read_manifest(tmp_path / name)
