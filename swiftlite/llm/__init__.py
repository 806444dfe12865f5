"""Language-model helpers: SFT with the standard label mask and SWIFT's loss scale, LISA, agent
evaluation, and a tuner benchmark.

    from swiftlite.llm import build_sft_dataset, SFTCollator, sft_loss, evaluate_loss, compare_tuners
    from swiftlite.llm import REACT_LOSS_SCALE, show_loss_scale      # per-token loss weights
    from swiftlite.llm import LISA, LISAConfig                       # a few layers trainable at a time
    from swiftlite.llm import evaluate_agent, run_agent              # Act.EM, hallucination, final answer
    from swiftlite.llm import multimodal_target_regex, freeze_parts  # MLLMs: ms-swift's freeze_* / all-linear
    from swiftlite.llm import prepare_lora_llm, save_lora_llm, load_lora_llm, multimodal_param_groups
    from swiftlite.llm import build_image_sft_dataset, ImageSFTCollator, vqa_accuracy  # <image> expansion
    from swiftlite.llm.quantized import QuantizeArguments, quantize_model  # QLoRA bases (needs the quant extra)
    from swiftlite.llm import nf4                                    # NF4 written out, to learn the format

See :mod:`swiftlite.llm.sft`, :mod:`~swiftlite.llm.loss_scale`, :mod:`~swiftlite.llm.lisa`,
:mod:`~swiftlite.llm.agent`, :mod:`~swiftlite.llm.multimodal`, :mod:`~swiftlite.llm.image_sft`,
:mod:`~swiftlite.llm.quantized`, :mod:`~swiftlite.llm.nf4`.
"""

from .agent import evaluate_agent, run_agent
from .image_sft import ImageSFTCollator, build_image_sft_dataset, encode_image_example, llava_processor, vqa_accuracy
from .lisa import LISA, LISAConfig
from .loss_scale import REACT_LOSS_SCALE
from .multimodal import (MODEL_ARCHS, MultiModelKeys, freeze_parts, get_model_arch, load_lora_llm,
                         multimodal_param_groups, multimodal_target_regex, prepare_lora_llm, register_model_arch,
                         save_lora_llm)
from .sft import (IGNORE_INDEX, SFTCollator, build_sft_dataset, compare_tuners, encode_pair, evaluate_loss,
                  sft_loss, show_loss_scale)

__all__ = ["IGNORE_INDEX", "encode_pair", "build_sft_dataset", "SFTCollator", "sft_loss", "evaluate_loss",
           "compare_tuners", "REACT_LOSS_SCALE", "show_loss_scale", "LISA", "LISAConfig", "evaluate_agent",
           "run_agent", "MultiModelKeys", "MODEL_ARCHS", "register_model_arch", "get_model_arch", "freeze_parts",
           "multimodal_target_regex", "prepare_lora_llm", "save_lora_llm", "load_lora_llm", "multimodal_param_groups",
           "llava_processor", "encode_image_example", "build_image_sft_dataset", "ImageSFTCollator", "vqa_accuracy"]
