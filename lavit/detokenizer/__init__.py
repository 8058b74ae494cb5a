"""The video detokenizer (docs/spec.md §4): motion condition encoder and motion-conditioned 3D U-Net."""
