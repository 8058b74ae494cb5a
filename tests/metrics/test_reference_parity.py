"""Our metrics against the reference libraries on identical inputs and identical weight files."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from metrics import CLIPSIM, FID, KVD, InceptionScore
from metrics.extractors import ClipModel


class _Images(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def _images(seed, n, size=(48, 64)):
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 3, *size), generator=gen, dtype=torch.uint8)
    return base


def test_fid_and_isc_equal_torch_fidelity(inception_weights):
    import torch_fidelity

    real, fake = _images(1, 10), _images(2, 12)
    ref = torch_fidelity.calculate_metrics(
        input1=_Images(fake), input2=_Images(real), fid=True, isc=True, isc_splits=3, cuda=False, verbose=False,
        batch_size=4, feature_extractor_weights_path=str(inception_weights), save_cpu_ram=True,
    )
    fid = FID(weights=str(inception_weights))
    for chunk in real.split(3):
        fid.update(chunk, real=True)
    for chunk in fake.split(5):
        fid.update(chunk, real=False)
    ours = fid.compute().item()
    assert ref["frechet_inception_distance"] > 1  # calibrated random weights: non-degenerate features
    assert ours == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)

    isc = InceptionScore(weights=str(inception_weights), splits=3, network=fid.extractor)
    for start in range(0, len(fake), 5):
        isc.update(fake[start : start + 5], indices=torch.arange(start, min(start + 5, len(fake))))
    mean, std = isc.compute()
    assert ref["inception_score_mean"] > 1.1
    assert mean.item() == pytest.approx(ref["inception_score_mean"], rel=1e-6)
    assert std.item() == pytest.approx(ref["inception_score_std"], rel=1e-5, abs=1e-9)


@pytest.mark.filterwarnings("ignore:The ..compute.. method")
def test_kvd_equals_torch_fidelity_kid_on_the_same_features():
    from torch_fidelity.metric_kid import kid_features_to_metric

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(40, 400, generator=gen, dtype=torch.float64)
    fake = torch.randn(30, 400, generator=gen, dtype=torch.float64) + 0.2
    ref = kid_features_to_metric(real, fake, kid_subsets=20, kid_subset_size=25, rng_seed=7, verbose=False)
    kvd = KVD(network=torch.nn.Identity(), subsets=20, subset_size=25, seed=7)
    # features straight from update_features, in data order through indices, shuffled batches
    for idx in torch.randperm(40, generator=gen).split(7):
        kvd.update_features(real[idx], "real", idx)
    for idx in torch.randperm(30, generator=gen).split(4):
        kvd.update_features(fake[idx], "fake", idx)
    mean, std = kvd.compute()
    assert mean.item() == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-12)
    assert std.item() == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-12)


def test_clipsim_equals_direct_open_clip(clip_weights):
    import open_clip
    from PIL import Image

    videos = torch.stack([_images(s, 3, (40, 56)) for s in (5, 6)])  # (2, 3 frames, 3, 40, 56)
    captions = ["a red car drives left", "a dog runs on the beach"]
    metric = CLIPSIM(model=ClipModel("ViT-B-32", str(clip_weights)))
    metric.update(videos[:1], captions[:1])
    metric.update(videos[1:], captions[1:])
    ours = metric.compute().item()

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(clip_weights))
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    per_video = []
    with torch.no_grad():
        for video, caption in zip(videos, captions):
            pixels = torch.stack([preprocess(Image.fromarray(f.permute(1, 2, 0).numpy())) for f in video])
            img = model.encode_image(pixels)
            img = img / img.norm(dim=-1, keepdim=True)
            txt = model.encode_text(tokenizer([caption]))
            txt = txt / txt.norm(dim=-1, keepdim=True)
            per_video.append((img @ txt.T).mean().item())
    assert abs(per_video[0] - per_video[1]) > 1e-3  # the two videos score differently
    assert ours == pytest.approx(float(np.mean(per_video)), abs=1e-6)


def test_empty_updates_are_no_ops(clip_weights):
    """An empty batch (what the evaluation loader gives when every video of a batch is bad) changes nothing."""
    videos = torch.stack([_images(s, 3, (40, 56)) for s in (5, 6)])
    captions = ["a red car drives left", "a dog runs on the beach"]
    clip = ClipModel("ViT-B-32", str(clip_weights))
    plain, padded = CLIPSIM(model=clip), CLIPSIM(model=clip)
    plain.update(videos, captions)
    padded.update(torch.empty(0, 0, 3, 0, 0, dtype=torch.uint8), [])  # the evaluation collate's empty batch
    padded.update(videos, captions)
    padded.update(videos[:0], [])
    assert padded.compute().item() == plain.compute().item()
    assert int(padded.count) == 2
    with pytest.raises(ValueError, match="0 videos"):
        padded.update(videos[:0], ["a caption without a video"])


def test_missing_weights_name_the_file_and_where_to_get_it(monkeypatch, tmp_path):
    from metrics import FVD, FID

    monkeypatch.delenv("LAVIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"rgb_imagenet\.pt.*(?s:.*)LAVIT_WEIGHTS_DIR"):
        FVD()
    monkeypatch.setenv("LAVIT_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"weights-inception-2015-12-05-6726825d\.pth(?s:.*)github\.com/toshas/torch-fidelity"):
        FID()


def test_fid_clip_backbone_and_clean_resize(inception_weights, clip_weights):
    from cleanfid.resize import make_resizer

    from metrics.extractors import clean_resize

    real, fake = _images(7, 4), _images(8, 5)
    fid = FID(backbone="clip", network=ClipModel("ViT-B-32", str(clip_weights)))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    feats_real = fid.extractor.image_features(real).double()
    feats_fake = fid.extractor.image_features(fake).double()
    from metrics.frechet import frechet_distance, gaussian_statistics

    expected = frechet_distance(*gaussian_statistics(feats_real), *gaussian_statistics(feats_fake))
    assert fid.num_features == 512 and fid.compute().item() == pytest.approx(expected.item(), rel=1e-9)

    resized = clean_resize(real[:1], 299)
    direct = make_resizer("PIL", False, "bicubic", (299, 299))(real[0].permute(1, 2, 0).numpy())
    assert resized.shape == (1, 3, 299, 299)
    assert np.abs(resized[0].permute(1, 2, 0).numpy().astype(np.float64) - direct).max() <= 0.5 + 1e-6
