"""swiftlite: readable parameter-efficient tuners with ms-swift's API.

    from swiftlite import Swift, LoRAConfig
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["q_proj", "v_proj"]))

Importing this package is light: torch, transformers and diffusers load only when a name that
needs them is first used. Every public name is in `_EXPORTS` below (the module it comes from -> its
names); nothing else is reachable as `swiftlite.<name>` until its submodule is imported.
"""
import importlib as _importlib  # private names: only _EXPORTS' names are public attributes

__version__ = "0.1.0"

_EXPORTS = {  # module -> the public names it gives `swiftlite`
    "swiftlite.api.model": ("Swift", "SwiftModel"),  # the façade (swiftlite/api/)
    "swiftlite.api.inspect": ("show",),
    "swiftlite.core.config": ("SwiftConfig", "register_tuner", "get_tuner"),  # the kit a tuner builds on
    "swiftlite.core.tuner": ("Tuner",),
    "swiftlite.core.layer": ("TunerLayer", "check_finite"),
    "swiftlite.exercises": ("check_answer",),  # tutorial exercises check the learner's value
    "swiftlite.tuners": (  # every tuner and its config (importing swiftlite.tuners registers them all)
        "AdapterConfig", "AdapterTuner", "BitFitConfig", "BitFitTuner", "IA3Config", "IA3Tuner", "LLaMAProConfig",
        "LLaMAProTuner", "LongLoRAConfig", "LongLoRATuner", "LoRAConfig", "LoRATuner", "NEFTuneConfig",
        "NEFTuneTuner", "PartConfig", "PartTuner", "PrefixConfig", "PrefixTuner", "PromptConfig", "PromptTuner",
        "ReftConfig", "ReftTuner", "ResAttn", "ResAttnConfig", "ResAttnTuner", "ResTuningConfig", "ResTuningTuner",
        "multi_task_forward", "SCETuningConfig", "SCETuningTuner", "scetuning_scale", "scetuning_condition",
        "set_condition", "SideConfig", "SideTuner", "UTuningConfig", "UTuningTuner",
        "DiffFitConfig", "DiffFitTuner", "SCTConfig", "SCTTuner", "select_salient_channels", "MoSAConfig", "MoSATuner",
        "BinaryAdapterConfig", "BinaryAdapterTuner", "HydraConfig", "HydraTuner", "ShiraConfig", "ShiraTuner",
    ),
    "swiftlite": (  # the subpackages and modules themselves
        "api", "bench", "cli", "core", "course", "data", "diffusion", "exercises", "kernels", "llm", "settings",
        "testing", "train", "tuners", "vision", "viz", "zoo",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'swiftlite' has no attribute {name!r}")
    if _WHERE[name] == __name__:  # a submodule: importing it binds it here
        return _importlib.import_module(f"{__name__}.{name}")
    return getattr(_importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted([*_WHERE, "__version__"])
