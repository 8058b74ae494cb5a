"""Placeholder ids of the understanding input (official ``conversation.py`` / LLaVA): a prompt's ``<image>`` /
``<video>`` becomes one negative id that the understanding model replaces by the media's embeddings."""

IMAGE_PLACEHOLDER = -200  # "<image>"
VIDEO_PLACEHOLDER = -201  # "<video>"
PLACEHOLDER_TOKENS = {"<image>": IMAGE_PLACEHOLDER, "<video>": VIDEO_PLACEHOLDER}
