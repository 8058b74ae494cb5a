"""Thin glue over the parts: each pipeline is a function or class with typed arguments the CLI exposes.

Generation pipelines (diffusers manner: ``from_config``, ``check_inputs``, numbered steps, output dataclasses):
:class:`TextToVideoPipeline`, :class:`ImageToVideoPipeline`, :class:`TextToImagePipeline`,
:class:`VideoReconstructionPipeline`, :class:`VideoQAPipeline`, all configured by one :class:`PipelineConfig`.
Imports are lazy, so ``import lavit.pipelines.extract`` stays light.
"""

_EXPORTS = {
    "PipelineConfig": "config", "GenerationSettings": "config",
    "TextToVideoPipeline": "text_to_video", "ImageToVideoPipeline": "image_to_video",
    "TextToImagePipeline": "text_to_image", "VideoReconstructionPipeline": "video_to_video",
    "VideoQAPipeline": "video_qa",
    "TextToVideoOutput": "outputs", "TextToImageOutput": "outputs", "VideoQAOutput": "outputs",
    "clip_boundary_jumps": "stitch", "stitch_clips": "stitch", "stitched_length": "stitch",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"lavit.pipelines.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lavit.pipelines' has no attribute {name!r}")
