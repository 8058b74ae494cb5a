"""The video detokenizer (docs/spec.md §4): motion condition encoder and motion-conditioned 3D U-Net."""

from lavit.detokenizer.autoencoder import PixelSpaceAutoencoder, decode_latents, encode_keyframes, encode_video, vae_scale_factor
from lavit.detokenizer.components import (
    SVD_SCHEDULER_CONFIG,
    MissingComponentError,
    load_image_scheduler,
    load_image_unet,
    load_image_vae,
    load_scheduler,
    load_vae,
)
from lavit.detokenizer.config import VIDEO_DETOKENIZER_CONFIGS, VideoDetokenizerConfig
from lavit.detokenizer.edm import edm_loss_weight, edm_scalings, sample_sigmas
from lavit.detokenizer.keyframe_decoder import (
    KEYFRAME_DECODER_CONFIGS,
    KeyframeDecoderConfig,
    KeyframeFeatureDecoder,
    load_keyframe_decoder,
    load_keyframe_decoder_weights,
)
from lavit.detokenizer.keyframe_pipeline import (
    KeyframeDetokenizerOutput,
    KeyframeDetokenizerPipeline,
    load_keyframe_codebook,
    load_keyframe_detokenizer,
)
from lavit.detokenizer.loading import load_svd_unet_weights, load_video_detokenizer, save_video_detokenizer
from lavit.detokenizer.model import EDMLoss, VideoDetokenizerModel, noise_augment
from lavit.detokenizer.motion_encoder import (
    MOTION_CONDITION_ENCODER_CONFIGS,
    MotionConditionEncoder,
    MotionConditionEncoderConfig,
    prepare_motion,
)
from lavit.detokenizer.pipeline import VideoDetokenizerOutput, VideoDetokenizerPipeline, guidance_scales, spatial_multiple
from lavit.detokenizer.unet import PAPER_UNET_CONFIG, TINY_UNET_CONFIG, MotionConditionedUNet, route_motion_context, unet_config

__all__ = [
    "EDMLoss",
    "KEYFRAME_DECODER_CONFIGS",
    "KeyframeDecoderConfig",
    "KeyframeFeatureDecoder",
    "load_keyframe_decoder",
    "load_keyframe_decoder_weights",
    "KeyframeDetokenizerOutput",
    "KeyframeDetokenizerPipeline",
    "load_image_scheduler",
    "load_image_unet",
    "load_image_vae",
    "load_keyframe_codebook",
    "load_keyframe_detokenizer",
    "MissingComponentError",
    "SVD_SCHEDULER_CONFIG",
    "load_scheduler",
    "load_svd_unet_weights",
    "load_vae",
    "load_video_detokenizer",
    "save_video_detokenizer",
    "PixelSpaceAutoencoder",
    "VIDEO_DETOKENIZER_CONFIGS",
    "VideoDetokenizerConfig",
    "VideoDetokenizerModel",
    "decode_latents",
    "edm_loss_weight",
    "edm_scalings",
    "encode_keyframes",
    "encode_video",
    "noise_augment",
    "sample_sigmas",
    "vae_scale_factor",
    "MOTION_CONDITION_ENCODER_CONFIGS",
    "PAPER_UNET_CONFIG",
    "TINY_UNET_CONFIG",
    "MotionConditionEncoder",
    "MotionConditionEncoderConfig",
    "MotionConditionedUNet",
    "prepare_motion",
    "route_motion_context",
    "unet_config",
    "VideoDetokenizerOutput",
    "VideoDetokenizerPipeline",
    "guidance_scales",
    "spatial_multiple",
]
