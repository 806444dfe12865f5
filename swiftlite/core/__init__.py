"""The kit every tuner builds on. It imports no tuner and no façade: `swiftlite.api` (Swift,
SwiftModel, save/load, show) sits above `swiftlite.tuners`, which sits above this package.

    config.py         SwiftConfig (typed, validated fields) and the tuner registry
    targeting.py      which modules a config's target_modules selects ("nothing matched" errors)
    layer.py          TunerLayer: wraps one module, per-adapter containers, activation, merge undo
    tuner.py          Tuner: match / check / inject, the hooks a tuner file overrides
    params.py         which parameters belong to an adapter, under canonical keys
    snapshot.py       all or nothing: a failed change leaves the model as it was
    peft_format.py    PEFT's checkpoint format, generic over tuners with a peft_spec
    io.py             safetensors files, atomic directory writes, safe loading (knows no tuner)
    modules.py, modules_to_save.py: shared module helpers, trainable copies

The façade, `swiftlite/api/`:

    model.py          SwiftModel and Swift: ms-swift's API over a base model
    checks.py         what is checked before a model changes (names, configs, state-dict keys, saved configs)
    checkpoint.py     save / load layout, read_adapters, PEFT-vs-swiftlite, extra_states
    offload.py        an inactive adapter's weights to CPU or "meta"
    inspect.py        show(): a model as a tree
"""
from .config import SwiftConfig, TUNERS, get_tuner, register_tuner
from .layer import TunerLayer, tuner_layers
from .tuner import Tuner

__all__ = ["SwiftConfig", "Tuner", "TunerLayer", "TUNERS", "get_tuner", "register_tuner", "tuner_layers"]
