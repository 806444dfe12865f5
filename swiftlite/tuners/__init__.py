"""Every tuning method, one file each. Importing this package registers them all.

Each module in this folder defines a config, its layer(s) and a `Tuner` subclass decorated with
`@register_tuner`; this file imports them all and re-exports every config class by name, so both
`from swiftlite.tuners import LoRAConfig` and ms-swift-style code work.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from ..core import TUNERS, Swift, SwiftConfig, SwiftModel, Tuner, TunerLayer, register_tuner

for _module in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _module.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_module.name}")

globals().update({_tuner.config_class.__name__: _tuner.config_class for _tuner in TUNERS.values()})
globals().update({_tuner.__name__: _tuner for _tuner in TUNERS.values()})

__all__ = ["Swift", "SwiftModel", "SwiftConfig", "Tuner", "TunerLayer", "register_tuner"] + sorted(
    name for t in TUNERS.values() for name in (t.config_class.__name__, t.__name__)
)
