"""Every tuning method, one file each. Importing this package registers them all.

Each module in this folder defines a config, its layer(s) and a `Tuner` subclass decorated with
`@register_tuner`; the explicit imports below register them and make every public name greppable,
so both `from swiftlite.tuners import LoRAConfig` and ms-swift-style code work. `Swift` and
`SwiftModel` live one floor up, in `swiftlite.api` (which imports this package). A new tuner file adds
one line here (tests/test_conformance.py fails for a tuner file that is not imported).
"""
from ..core import TUNERS, SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.layer import check_finite
from .adapter import AdapterConfig, AdapterTuner
from .bitfit import BitFitConfig, BitFitTuner
from .ia3 import IA3Config, IA3Tuner
from .llamapro import LLaMAProConfig, LLaMAProTuner
from .longlora import LongLoRAConfig, LongLoRATuner
from .lora import LoRAConfig, LoRATuner
from .neftune import NEFTuneConfig, NEFTuneTuner
from .part import PartConfig, PartTuner
from .prefix import PrefixConfig, PrefixTuner
from .prompt import PromptConfig, PromptTuner
from .reft import ReftConfig, ReftTuner
from .resattn import ResAttn, ResAttnConfig, ResAttnTuner
from .restuning import ResTuningConfig, ResTuningTuner, multi_task_forward
from .scetuning import SCETuningConfig, SCETuningTuner, scetuning_scale
from .scetuning_condition import scetuning_condition, set_condition
from .side import SideConfig, SideTuner
from .utuning import UTuningConfig, UTuningTuner

__all__ = [
    "SwiftConfig", "Tuner", "TunerLayer", "register_tuner", "check_finite",
    "AdapterConfig", "AdapterTuner",
    "BitFitConfig", "BitFitTuner",
    "IA3Config", "IA3Tuner",
    "LLaMAProConfig", "LLaMAProTuner",
    "LongLoRAConfig", "LongLoRATuner",
    "LoRAConfig", "LoRATuner",
    "NEFTuneConfig", "NEFTuneTuner",
    "PartConfig", "PartTuner",
    "PrefixConfig", "PrefixTuner",
    "PromptConfig", "PromptTuner",
    "ReftConfig", "ReftTuner",
    "ResAttn", "ResAttnConfig", "ResAttnTuner",
    "ResTuningConfig", "ResTuningTuner", "multi_task_forward",
    "SCETuningConfig", "SCETuningTuner", "scetuning_scale", "scetuning_condition", "set_condition",
    "SideConfig", "SideTuner",
    "UTuningConfig", "UTuningTuner",
]
