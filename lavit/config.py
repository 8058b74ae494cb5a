"""``PresetConfig``: what every model config shares (LitGPT's ``Config.from_name`` pattern).

A model config is a frozen dataclass that inherits from ``PresetConfig`` and validates itself in
``__post_init__``; its presets are one table of plain mappings (``Config.presets``), its ``kind`` names
the model in error messages. Checkpoints store ``to_dict()``; loaders rebuild with ``from_dict``.
``PresetConfig`` is itself a (field-less) dataclass, so jsonargparse still sees a pure dataclass and
parses it from nested YAML mappings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, Mapping, TypeVar

C = TypeVar("C", bound="PresetConfig")


@dataclass(frozen=True)
class PresetConfig:
    """Base of frozen dataclass configs: presets by name, mappings, YAML namespaces, plain-value export."""

    kind: ClassVar[str] = "model"
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def from_name(cls: type[C], name: str, **overrides: Any) -> C:
        """The preset ``name`` of ``cls.presets``, fields replaced by ``overrides``."""
        if name not in cls.presets:
            raise ValueError(f"unknown {cls.kind} preset {name!r}; known: {sorted(cls.presets)}")
        return cls.from_dict({**cls.presets[name], **overrides})

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """A config from a mapping (a checkpoint's, a JSON file's); unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.kind} config keys {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    @classmethod
    def coerce(cls: type[C], value: Any) -> C:
        """A config from a config, a preset name or a mapping (None: the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls.from_name(value)
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if hasattr(value, "__dict__"):  # a jsonargparse Namespace of the fields
            return cls.from_dict(vars(value))
        raise TypeError(f"expected a {cls.__name__}, a preset name or a mapping, got {type(value).__name__}")

    def require_positive(self, *names: str) -> None:
        """Raise ``ValueError("<name> must be positive, got <value>")`` for the first named field that is not > 0."""
        for name in names:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON / YAML values (lists for tuples), as checkpoints and exported weights store them."""
        return {k: _plain(v) for k, v in asdict(self).items()}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value
