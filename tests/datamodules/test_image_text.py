"""ImageTextDataModule: folders and CSV / JSONL manifests of real image files; bad files skipped and counted, batches
never empty, a set with no readable image a typed error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.image_text import ImageTextDataModule, read_image_manifest
from datamodules.skipped import NoUsableDataError, NoUsableImagesError
from lavit.video.keyframes import CLIP_MEAN, CLIP_STD


def write_images(folder, n, size=(40, 30)):
    """n solid-colour PNGs whose colour encodes the index: red = 10 * i."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((size[1], size[0], 3), (10 * i, 100, 200), np.uint8)).save(folder / f"img{i:02d}.png")
        (folder / f"img{i:02d}.txt").write_text(f"caption {i}\n")


def red_of(image):
    """The 0..255 red value a CLIP-normalised solid image was made from."""
    return round(float(image[0].mean() * CLIP_STD[0] + CLIP_MEAN[0]) * 255)


def batches(dm, split="train"):
    loader = getattr(dm, f"{split}_dataloader")()
    return [dm.on_before_batch_transfer(b, 0) for b in loader]


def test_folder_images_are_resized_normalised_and_captioned(tmp_path):
    write_images(tmp_path / "imgs", 5)
    dm = ImageTextDataModule(str(tmp_path / "imgs"), image_size=16, batch_size=2, val_fraction=0.2)
    dm.setup("fit")
    train = batches(dm)
    assert [b["image"].shape[0] for b in train] == [2, 2]
    images = torch.cat([b["image"] for b in train])
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    ids = [i for b in train for i in b["image_id"]]
    assert sorted(ids) == ["img01", "img02", "img03", "img04"]  # img00 held out for validation
    for image, image_id, caption in zip(images, ids, [c for b in train for c in b["caption"]]):
        assert red_of(image) == 10 * int(image_id[3:]) and caption == f"caption {int(image_id[3:])}"
    (val,) = batches(dm, "val")
    assert val["image_id"] == ["img00"]


def test_csv_and_jsonl_manifests(tmp_path):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "m.csv").write_text("image,caption\nimgs/img00.png,a cat\nimgs/img02.png,a dog\n")
    records = read_image_manifest(tmp_path / "m.csv")
    assert [(r.path.name, r.caption, r.image_id) for r in records] == [("img00.png", "a cat", "img00"), ("img02.png", "a dog", "img02")]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({"path": f"imgs/img0{i}.png", "text": f"t{i}", "id": f"x{i}"}) for i in (1, 2)))
    dm = ImageTextDataModule(str(tmp_path / "m.jsonl"), val=str(tmp_path / "m.csv"), image_size=8, batch_size=4)
    dm.setup("fit")
    (train,) = batches(dm)
    assert sorted(train["image_id"]) == ["x1", "x2"] and sorted(train["caption"]) == ["t1", "t2"]
    (val,) = batches(dm, "val")
    assert [red_of(i) for i in val["image"]] == [0, 20]
    with pytest.raises(ValueError, match=r"need an image column .*found columns \['video', 'caption'\]"):
        (tmp_path / "bad.csv").write_text("video,caption\na.mp4,x\n")
        read_image_manifest(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="nope"):
        ImageTextDataModule(str(tmp_path / "nope"))


def test_bad_images_are_replaced_and_counted_once(tmp_path):
    write_images(tmp_path / "imgs", 4)
    (tmp_path / "imgs" / "img01.png").write_bytes(b"not a png at all")
    (tmp_path / "imgs" / "img03.png").write_bytes((tmp_path / "imgs" / "img02.png").read_bytes()[:50])  # truncated
    dm = ImageTextDataModule(str(tmp_path / "imgs"), image_size=8, batch_size=4, val_fraction=0)
    dm.setup("fit")
    for _ in range(2):
        (batch,) = batches(dm)
        assert batch["image"].shape[0] == 4  # full batch: bad images replaced by readable ones
        assert set(batch["image_id"]) <= {"img00", "img02"}
        assert all(red_of(i) in (0, 20) for i in batch["image"])
    assert sorted(p.rsplit("/", 1)[-1] for p in dm.skipped) == ["img01.png", "img03.png"]
    assert sorted(dm.skipped.values()) == ["not an image (no known image format)", "truncated or corrupt image (OSError: "
                                          "image file is truncated)"]


def test_no_readable_image_raises_a_typed_error(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"b{i}.jpg").write_bytes(b"")
    dm = ImageTextDataModule(str(tmp_path / "imgs"), image_size=8, batch_size=2, val_fraction=0)
    dm.setup("fit")
    with pytest.raises(NoUsableImagesError, match=r"no usable image in the set: 3 images skipped as unreadable \(3 x not an image \(no known image format\)\)"):
        batches(dm)
    assert issubclass(NoUsableImagesError, NoUsableDataError) and issubclass(NoUsableImagesError, ValueError)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="no images"):
        read_image_manifest(tmp_path / "empty_dir")
