"""Language-model helpers: supervised fine-tuning with the standard label mask, and a tuner benchmark.

    from swiftlite.llm import build_sft_dataset, SFTCollator, sft_loss, evaluate_loss, compare_tuners

See :mod:`swiftlite.llm.sft`.
"""

from .sft import IGNORE_INDEX, SFTCollator, build_sft_dataset, compare_tuners, encode_pair, evaluate_loss, sft_loss

__all__ = ["IGNORE_INDEX", "encode_pair", "build_sft_dataset", "SFTCollator", "sft_loss", "evaluate_loss",
           "compare_tuners"]
