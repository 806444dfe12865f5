"""swiftlite: readable parameter-efficient tuners with ms-swift's API.

    from swiftlite import Swift, LoRAConfig
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["q_proj", "v_proj"]))

Importing this package is light: torch, transformers and diffusers load only when a name that
needs them is first used. Every public name is in `_EXPORTS` below (name -> the module it comes
from); nothing else is reachable as `swiftlite.<name>` until its submodule is imported.
"""
import importlib as _importlib  # private names: only _EXPORTS' names are public attributes

__version__ = "0.1.0"

_EXPORTS = {
    # the façade (swiftlite/api/)
    "Swift": "swiftlite.api.model", "SwiftModel": "swiftlite.api.model", "show": "swiftlite.api.inspect",
    # the kit a tuner builds on (swiftlite/core/)
    "SwiftConfig": "swiftlite.core.config", "register_tuner": "swiftlite.core.config", "get_tuner": "swiftlite.core.config",
    "Tuner": "swiftlite.core.tuner", "TunerLayer": "swiftlite.core.layer", "check_finite": "swiftlite.core.layer",
    # the tuners, as swiftlite/tuners/__init__.py exports them (importing it registers every tuner)
    "AdapterConfig": "swiftlite.tuners", "AdapterTuner": "swiftlite.tuners", "BitFitConfig": "swiftlite.tuners",
    "BitFitTuner": "swiftlite.tuners", "IA3Config": "swiftlite.tuners", "IA3Tuner": "swiftlite.tuners",
    "LLaMAProConfig": "swiftlite.tuners", "LLaMAProTuner": "swiftlite.tuners", "LongLoRAConfig": "swiftlite.tuners",
    "LongLoRATuner": "swiftlite.tuners", "LoRAConfig": "swiftlite.tuners", "LoRATuner": "swiftlite.tuners",
    "NEFTuneConfig": "swiftlite.tuners", "NEFTuneTuner": "swiftlite.tuners", "PartConfig": "swiftlite.tuners",
    "PartTuner": "swiftlite.tuners", "PrefixConfig": "swiftlite.tuners", "PrefixTuner": "swiftlite.tuners",
    "PromptConfig": "swiftlite.tuners", "PromptTuner": "swiftlite.tuners", "ReftConfig": "swiftlite.tuners",
    "ReftTuner": "swiftlite.tuners", "ResAttn": "swiftlite.tuners", "ResAttnConfig": "swiftlite.tuners",
    "ResAttnTuner": "swiftlite.tuners", "ResTuningConfig": "swiftlite.tuners", "ResTuningTuner": "swiftlite.tuners",
    "multi_task_forward": "swiftlite.tuners", "SCETuningConfig": "swiftlite.tuners",
    "SCETuningTuner": "swiftlite.tuners", "scetuning_scale": "swiftlite.tuners",
    "scetuning_condition": "swiftlite.tuners", "set_condition": "swiftlite.tuners",
    "SideConfig": "swiftlite.tuners", "SideTuner": "swiftlite.tuners", "UTuningConfig": "swiftlite.tuners",
    "UTuningTuner": "swiftlite.tuners",
    # subpackages and modules: a name mapped to "swiftlite.<name>" is that module itself
    "api": "swiftlite.api", "bench": "swiftlite.bench", "cli": "swiftlite.cli", "core": "swiftlite.core",
    "course": "swiftlite.course", "data": "swiftlite.data", "diffusion": "swiftlite.diffusion",
    "llm": "swiftlite.llm", "testing": "swiftlite.testing", "train": "swiftlite.train",
    "tuners": "swiftlite.tuners", "vision": "swiftlite.vision", "viz": "swiftlite.viz", "zoo": "swiftlite.zoo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'swiftlite' has no attribute {name!r}")
    module = _importlib.import_module(_EXPORTS[name])
    return module if _EXPORTS[name] == f"{__name__}.{name}" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, "__version__"])
