"""Language-model helpers: SFT with the standard label mask and SWIFT's loss scale, LISA, agent
evaluation, and a tuner benchmark.

    from swiftlite.llm import build_sft_dataset, SFTCollator, sft_loss, evaluate_loss, compare_tuners
    from swiftlite.llm import REACT_LOSS_SCALE, show_loss_scale      # per-token loss weights
    from swiftlite.llm import LISA, LISAConfig                       # a few layers trainable at a time
    from swiftlite.llm import evaluate_agent, run_agent              # Act.EM, hallucination, final answer

See :mod:`swiftlite.llm.sft`, :mod:`~swiftlite.llm.loss_scale`, :mod:`~swiftlite.llm.lisa`,
:mod:`~swiftlite.llm.agent`.
"""

from .agent import evaluate_agent, run_agent
from .lisa import LISA, LISAConfig
from .loss_scale import REACT_LOSS_SCALE
from .sft import (IGNORE_INDEX, SFTCollator, build_sft_dataset, compare_tuners, encode_pair, evaluate_loss,
                  sft_loss, show_loss_scale)

__all__ = ["IGNORE_INDEX", "encode_pair", "build_sft_dataset", "SFTCollator", "sft_loss", "evaluate_loss",
           "compare_tuners", "REACT_LOSS_SCALE", "show_loss_scale", "LISA", "LISAConfig", "evaluate_agent",
           "run_agent"]
