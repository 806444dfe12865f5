"""The engine every tuner shares.

    config.py         SwiftConfig (typed, validated fields) and the tuner registry
    targeting.py      which modules a config's target_modules selects ("nothing matched" errors)
    layer.py          TunerLayer: wraps one module, per-adapter containers, activation, merge undo
    tuner.py          Tuner: match / check / inject, the hooks a tuner file overrides
    model.py          SwiftModel and Swift: ms-swift's API over a base model
    params.py         which parameters belong to an adapter, under canonical keys
    checks.py         what is checked before a model changes (names, configs, state-dict keys)
    snapshot.py       all or nothing: a failed change leaves the model as it was
    checkpoint.py     save / load layout, read_adapters, PEFT-vs-swiftlite, extra_states
    peft_format.py    PEFT's checkpoint format, generic over tuners with a peft_spec
    io.py             safetensors files, atomic directory writes, safe loading
    offload.py        an inactive adapter's weights to CPU or "meta"
    modules.py, modules_to_save.py, inspect.py: shared module helpers, trainable copies, show()
"""
from .config import SwiftConfig, TUNERS, get_tuner, register_tuner
from .layer import TunerLayer, tuner_layers
from .model import Swift, SwiftModel
from .tuner import Tuner

__all__ = ["Swift", "SwiftModel", "SwiftConfig", "Tuner", "TunerLayer", "TUNERS", "get_tuner", "register_tuner", "tuner_layers"]
