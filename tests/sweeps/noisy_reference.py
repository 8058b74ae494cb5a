"""A seeded generator for sweep tests: the reference video plus Gaussian noise of std ``4 * keyframe_guidance``
(0-255 scale), drawn from the item's seed. Its output depends on the seed and the override, so a sweep that
mixed up seeds or overrides across processes or reruns would change the table."""

import torch

from lavit.sweeps.generators import ReferenceVideos


class NoisyReference(ReferenceVideos):
    calls = 0

    def __call__(self, prompts, seed, num_clips, keyframe_guidance=1.0, **overrides):
        NoisyReference.calls += len(prompts)
        g = torch.Generator().manual_seed(seed)
        out = []
        for video in super().__call__(prompts, seed, num_clips):
            noise = torch.randn(video.shape, generator=g) * 4 * keyframe_guidance
            out.append((video.float() + noise).round().clamp(0, 255).to(torch.uint8))
        return out
