"""``class_path`` / ``init_args`` specs to objects (the sweep's generator, metrics and their networks)."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

# where a short class name (``FVD``, ``ReferenceVideos``) is looked up, in order
SHORT_NAME_MODULES = ("metrics", "lavit.sweeps.generators", "lavit.sweeps.random_networks", "metrics.networks")


def resolve_class(class_path: str) -> type:
    """The class a dotted path (``metrics.FVD``) or a short name (``FVD``) names."""
    if "." in class_path:
        module, _, name = class_path.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"class_path {class_path!r} does not name a class ({err})") from None
    for module in SHORT_NAME_MODULES:
        cls = getattr(importlib.import_module(module), class_path, None)
        if isinstance(cls, type):
            return cls
    raise ValueError(f"class_path {class_path!r}: no such class in {', '.join(SHORT_NAME_MODULES)}; give a dotted path")


def instantiate(spec: Any, **extra: Any) -> Any:
    """Build ``{"class_path": ..., "init_args": {...}}`` (nested specs in init_args too); other values as they are."""
    if isinstance(spec, Mapping) and "class_path" in spec:
        unknown = set(spec) - {"class_path", "init_args"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} beside class_path {spec['class_path']!r}; allowed: class_path, init_args")
        args = {k: instantiate(v) for k, v in (spec.get("init_args") or {}).items()}
        return resolve_class(str(spec["class_path"]))(**args, **extra)
    if isinstance(spec, Mapping):
        return {k: instantiate(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [instantiate(v) for v in spec]
    return spec
