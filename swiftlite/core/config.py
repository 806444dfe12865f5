"""SwiftConfig: the base of every tuner's configuration, and the tuner registry.

A tuner is a pair (config dataclass, tuner class). The config says *what* to inject and where
(`target_modules`, ranks, ...); the tuner class says *how* (see `core/tuner.py`). Both are tied
together by the config's `swift_type` string, which is also what a checkpoint's
`adapter_config.json` stores, so a saved adapter finds its tuner again when loaded.

Field names and defaults follow ms-swift's `swift.tuners` wherever ms-swift has the tuner.

Every field is checked against its type hint when a config is built and whenever a field is set
afterwards (`_check_field`, generated from the dataclass fields, so a new tuner is covered without
code): `True` is not an int, `"0.1"` is not a float, `None` only where the hint allows it, and the
markers below bound sizes and ranges. A tuner's `validate()` then checks what needs several fields.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union

from .io import CONFIG_NAME, read_json, write_json_atomic

SWIFT_TYPE_KEY = "swift_type"

# No size, rank, length or count in a config may exceed this (2**20): a larger one is a typo that
# would otherwise try to allocate terabytes at injection time.
MAX_SIZE = 2**20


@dataclass(frozen=True)
class Range:
    """A type-hint marker: `Annotated[int, Range(1, MAX_SIZE, "a positive int")]`."""

    low: float
    high: float
    text: str  # what the value must be, for the error message
    low_open: bool = False  # True: `low` itself is excluded
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


# Field types shared by the tuners' configs (the markers drive both the check and the error text).
PositiveInt = Annotated[int, Range(1, MAX_SIZE, f"a positive int (at most 2**20 = {MAX_SIZE})")]
Index = Annotated[int, Range(-MAX_SIZE, MAX_SIZE, f"an index between -{MAX_SIZE} and {MAX_SIZE}")]
NonNegativeFloat = Annotated[float, Range(0.0, math.inf, "a finite number >= 0")]
PositiveFloat = Annotated[float, Range(0.0, math.inf, "a finite number > 0", low_open=True)]
Probability = Annotated[float, Range(0.0, 1.0, "a number in [0, 1)", high_open=True)]
ModuleNames = Annotated[list[str], "a list of module names"]
# A module selector: a regex that must match the whole name, or a list of names / dotted suffixes.
Target = Annotated[Union[str, list[str], None],
                   "None, a regex string (matching the whole module name) or a list of module names"]


class ConfigError(ValueError, TypeError):
    """A config field is wrong. A ValueError (ms-swift / PEFT raise those) and, for a wrong type, a
    TypeError too, so either `except` catches it."""


def check_value(value: Any, hint: Any) -> str | None:
    """None if `value` fits the type hint `hint`, else what was expected ("a positive int ...")."""
    if hint is Any or hint is typing.Any:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        problem = check_value(value, args[0])
        if problem is not None:
            texts = [m if isinstance(m, str) else m.text for m in args[1:] if isinstance(m, (str, Range))]
            return texts[0] if texts else problem
        for mark in args[1:]:
            if isinstance(mark, Range) and value not in mark:
                return mark.text
        return None
    if origin in (Union, types.UnionType):
        problems = [check_value(value, a) for a in args]
        if any(p is None for p in problems):
            return None
        # A member whose plain type fits but whose range does not explains best ("a positive int").
        for a, p in zip(args, problems):
            if _plain_type_fits(value, a):
                return p + (" or None" if type(None) in args and "None" not in p else "")
        return " or ".join(dict.fromkeys(problems))
    if origin is Literal:
        return None if any(value == a and type(value) is type(a) for a in args) else f"one of {list(args)}"
    if origin in (list, tuple, set, frozenset, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple, set, frozenset)):
            return _describe(hint)
        item = args[0] if args else Any
        for v in value:
            if check_value(v, item) is not None:
                return f"{_describe(hint)} (bad item {v!r})"
        return None
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return "a dict"
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        for k, v in value.items():
            if check_value(k, key_hint) is not None:
                return f"a dict with keys {check_value(k, key_hint)} (bad key {k!r})"
            if check_value(v, value_hint) is not None:
                return f"a dict with values {check_value(v, value_hint)} (bad entry {k!r}: {v!r})"
        return None
    if hint is type(None) or hint is None:
        return None if value is None else "None"
    if hint is bool:
        return None if isinstance(value, bool) else "True or False"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an int"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "a str"
    if isinstance(hint, type):
        return None if isinstance(value, hint) else f"a {hint.__name__}"
    return None  # a hint this checker does not understand (e.g. a Callable): not checked


def _plain_type_fits(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) is Annotated:
        return check_value(value, typing.get_args(hint)[0]) is None
    return False


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    item = args[0] if args else None
    names = {str: "str", int: "int", float: "number", bool: "bool"}
    return f"a list of {names.get(item, 'items')}" if item is not None else "a list"


def field_hints(config_cls: type) -> dict[str, Any]:
    """{field name: resolved type hint} of a config dataclass (cached on the class)."""
    cached = config_cls.__dict__.get("_field_hints_cache")
    if cached is None:
        try:
            hints = typing.get_type_hints(config_cls, include_extras=True)
        except Exception as err:  # an annotation naming something its module does not define
            raise TypeError(f"{config_cls.__name__}: cannot resolve the type hints of its fields ({err}); "
                            f"import every name used in them at module level") from None
        cached = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_cls)}
        setattr(config_cls, "_field_hints_cache", cached)
    return cached


class _TunerRegistry(dict):
    """swift_type -> tuner class, looked up case-insensitively: ms-swift writes some types in lower
    case ('part', 'neftune', 'longlora') and others in upper case ('LORA'), so a checkpoint's string is
    matched whatever its case; the registered spelling is what swiftlite writes."""

    def _key(self, swift_type: Any) -> Any:
        if isinstance(swift_type, str) and not dict.__contains__(self, swift_type):
            return next((k for k in self if k.lower() == swift_type.lower()), swift_type)
        return swift_type

    def __contains__(self, swift_type: Any) -> bool:
        return dict.__contains__(self, self._key(swift_type))

    def __getitem__(self, swift_type: Any) -> type:
        return dict.__getitem__(self, self._key(swift_type))

    def get(self, swift_type: Any, default: Any = None) -> Any:
        return dict.get(self, self._key(swift_type), default)


# swift_type -> tuner class (a subclass of core.tuner.Tuner). Filled by `register_tuner`.
TUNERS: dict[str, type] = _TunerRegistry()


@dataclass
class SwiftConfig:
    """Base configuration. Subclasses set `swift_type` as a field default and add their fields."""

    swift_type: str | None = field(default=None)

    # Fields that must not reach adapter_config.json (runtime-only objects, e.g. callables).
    _runtime_fields: ClassVar[tuple[str, ...]] = ()
    # Fields another library's config has (PEFT's, which ms-swift's configs extend) that this class does
    # not implement, with the value at which leaving them out is exact. `from_dict` raises when a
    # checkpoint sets one to anything else (None, {} and [] count as unset): ignoring it would load
    # without error and compute something else.
    _unsupported_fields: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        self.__dict__["_initialised"] = True
        for f in dataclasses.fields(self):
            self._check_field(f.name, getattr(self, f.name))
        self.validate()

    def __setattr__(self, name: str, value: Any) -> None:
        # Fields are checked on every assignment after construction (`cfg.r = 0` raises at once);
        # during __init__ they are checked together in __post_init__.
        if self.__dict__.get("_initialised") and name in self.__dataclass_fields__:
            self._check_field(name, value)
        super().__setattr__(name, value)

    def _check_field(self, name: str, value: Any) -> None:
        """Raise ConfigError('<Config>.<field>: must be <what the type hint allows>, got <value>')."""
        expected = check_value(value, field_hints(type(self))[name])
        if expected is not None:
            raise ConfigError(f"{type(self).__name__}.{name}: must be {expected}, got {value!r}"
                              f"{'' if value is None else f' ({type(value).__name__})'}")

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the offending field. Subclasses extend this."""

    def _require(self, ok: bool, field_name: str, message: str) -> None:
        """Raise `ValueError('<Config>.<field>: <message>')` unless `ok`."""
        if not ok:
            raise ConfigError(f"{type(self).__name__}.{field_name}: {message}")

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
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}.from_dict: expected a dict of config fields, got {type(data).__name__}")
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
        for name in unknown:
            harmless = target_cls._unsupported_fields.get(name, data[name])
            if data[name] not in (harmless, None, {}, []):
                raise ConfigError(f"{target_cls.__name__}: {name}={data[name]!r} changes what the adapter computes, "
                                  f"and swiftlite does not implement {name!r}; load this checkpoint with ms-swift "
                                  f"or PEFT, or remove the field if it was set by mistake")
        if unknown:
            import warnings

            shown = ", ".join(unknown[:2]) + (", ..." if len(unknown) > 2 else "")  # one short line, not 25 names
            warnings.warn(f"{target_cls.__name__}: ignoring {len(unknown)} unset field(s) swiftlite does not "
                          f"implement ({shown})", stacklevel=2)
        return target_cls(**{k: v for k, v in data.items() if k in names})

    def save_pretrained(self, save_directory: str) -> None:
        os.makedirs(save_directory, exist_ok=True)
        write_json_atomic(self.to_dict(), os.path.join(save_directory, CONFIG_NAME))

    @classmethod
    def from_pretrained(cls, directory: str) -> "SwiftConfig":
        return cls.from_dict(read_json(os.path.join(directory, CONFIG_NAME)))

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
    field_hints(config_cls)  # an unresolvable type hint fails here, not at the first config
    TUNERS[swift_type] = tuner_cls
    return tuner_cls


def get_tuner(swift_type: str) -> type:
    if swift_type not in TUNERS:
        known = ", ".join(sorted(TUNERS))
        raise ValueError(f"swift_type={swift_type!r} is not a registered tuner; known: {known}")
    return TUNERS[swift_type]
