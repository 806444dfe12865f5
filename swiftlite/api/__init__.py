"""The façade: ms-swift's API over a base model, one floor above the tuners.

    core/  (the kit)  <-  tuners/  (one file or package per method)  <-  api/  (this package)

Importing this package imports `swiftlite.tuners` once, here, which registers every tuner; so
nothing below it needs to import the tuners to fill the registry.

    model.py          SwiftModel and Swift: prepare_model, from_pretrained, activation, merge
    checks.py         what is checked before a model changes (names, configs, state-dict keys, saved configs)
    checkpoint.py     save / load layout, read_adapters, PEFT-vs-swiftlite, extra_states
    offload.py        an inactive adapter's weights to CPU or "meta"
    inspect.py        show(): a model as a tree
"""
from .. import tuners  # noqa: F401  (registers every tuner before the façade reads the registry)
from .inspect import show
from .model import Swift, SwiftModel

__all__ = ["Swift", "SwiftModel", "show"]
