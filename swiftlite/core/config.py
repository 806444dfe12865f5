"""SwiftConfig: the base of every tuner's configuration, and the tuner registry.

A tuner is a pair (config dataclass, tuner class). The config says *what* to inject and where
(`target_modules`, ranks, ...); the tuner class says *how* (see `core/tuner.py`). Both are tied
together by the config's `swift_type` string, which is also what a checkpoint's
`adapter_config.json` stores, so a saved adapter finds its tuner again when loaded.

Field names and defaults follow ms-swift's `swift.tuners` wherever ms-swift has the tuner.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

CONFIG_NAME = "adapter_config.json"
SWIFT_TYPE_KEY = "swift_type"

# swift_type -> tuner class (a subclass of core.tuner.Tuner). Filled by `register_tuner`.
TUNERS: dict[str, type] = {}


@dataclass
class SwiftConfig:
    """Base configuration. Subclasses set `swift_type` as a field default and add their fields."""

    swift_type: str = field(default=None)

    # Fields that must not reach adapter_config.json (runtime-only objects, e.g. callables).
    _runtime_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.validate()

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the offending field. Subclasses extend this."""

    def _require(self, ok: bool, field_name: str, message: str) -> None:
        """Raise `ValueError('<Config>.<field>: <message>')` unless `ok`."""
        if not ok:
            raise ValueError(f"{type(self).__name__}.{field_name}: {message}")

    # ---- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            if f.name in self._runtime_fields:
                continue
            value = getattr(self, f.name)
            if isinstance(value, (set, tuple)):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SwiftConfig":
        """Build the right config subclass from a dict (dispatching on `swift_type`)."""
        data = dict(data)
        target_cls = cls
        if cls is SwiftConfig:
            swift_type = data.get(SWIFT_TYPE_KEY)
            if swift_type not in TUNERS:
                known = ", ".join(sorted(TUNERS)) or "(none registered)"
                raise ValueError(
                    f"adapter_config.json: swift_type={swift_type!r} is not a registered tuner; "
                    f"known: {known}. Import the module that registers it first."
                )
            target_cls = TUNERS[swift_type].config_class
        names = {f.name for f in dataclasses.fields(target_cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            import warnings

            warnings.warn(f"{target_cls.__name__}: ignoring unknown fields {unknown}", stacklevel=2)
        return target_cls(**{k: v for k, v in data.items() if k in names})

    def save_pretrained(self, save_directory: str) -> None:
        from .io import write_json_atomic

        os.makedirs(save_directory, exist_ok=True)
        write_json_atomic(self.to_dict(), os.path.join(save_directory, CONFIG_NAME))

    @classmethod
    def from_pretrained(cls, directory: str) -> "SwiftConfig":
        with open(os.path.join(directory, CONFIG_NAME)) as fh:
            return cls.from_dict(json.load(fh))

    # ---- targeting ----------------------------------------------------------------------------
    def matched_modules(self, model) -> list[str]:
        """The exact module names this config would attach to in `model` (raises if none)."""
        return get_tuner(self.swift_type).match(model, self)


def register_tuner(tuner_cls: type) -> type:
    """Register a tuner class (usable as a decorator). Its `config_class.swift_type` default is
    the key; after registration, `Swift.prepare_model`, save/load, activation and the conformance
    kit work for it with no further code."""
    config_cls = tuner_cls.config_class
    swift_type = config_cls.__dataclass_fields__[SWIFT_TYPE_KEY].default
    if not swift_type:
        raise ValueError(
            f"{config_cls.__name__}.swift_type: give it a default, e.g. "
            f"`swift_type: str = field(default='MY_TUNER')`"
        )
    TUNERS[swift_type] = tuner_cls
    return tuner_cls


def get_tuner(swift_type: str) -> type:
    if swift_type not in TUNERS:
        known = ", ".join(sorted(TUNERS))
        raise ValueError(f"swift_type={swift_type!r} is not a registered tuner; known: {known}")
    return TUNERS[swift_type]
