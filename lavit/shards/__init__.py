"""Preprocessed clip / token shards (litdata): the format shared by ``lavit preprocess`` and the streaming DataModules."""

from lavit.shards.format import (
    OPTIONS_FILE,
    STAGES,
    ShardOptions,
    ShardOptionsMismatchError,
    decode_image,
    decode_sample,
    encode_image,
    read_options,
    write_options,
)

__all__ = [
    "OPTIONS_FILE",
    "STAGES",
    "ShardOptions",
    "ShardOptionsMismatchError",
    "decode_image",
    "decode_sample",
    "encode_image",
    "read_options",
    "write_options",
]
