"""Clip settings of the compressed-video pipeline, defined once (docs/spec.md §1).

The API (``extract_clips``), the command line (``lavit extract``) and the DataModules all take their
defaults from here.
"""

DEFAULT_FPS = 6.0  # MPEG-4 re-encode frame rate
DEFAULT_GOP_SIZE = 12  # an I-frame every 12 output frames (2 s)
DEFAULT_BIT_RATE = 8_000_000  # bit/s
CLIP_LEN = 24  # frames per clip (4 s): one keyframe + its motion
FIELD_SIZE = (20, 36)  # (H, W) of the motion grid the tokenizer reads
DEFAULT_MAX_CLIPS = 8  # clips per video (8 for generation, 16 for understanding)
DEFAULT_MIN_FRAMES = DEFAULT_GOP_SIZE  # shorter videos (after resampling) are "too short"
# Output frames one transcode may produce (4 h at 6 fps): real data sets stay far below it; a file
# whose timestamps jump by hours (a corrupt or concatenated capture) stops with a VideoDecodeError.
DEFAULT_MAX_FRAMES = 86_400
