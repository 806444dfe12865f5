"""Vision transfer: fine-tune the zoo's ViT on the tiny VTAB-like tasks and compare tuners.

    from swiftlite.vision import transfer, run_suite, summarize, ResultsTable, LINEAR_PROBE
    row = transfer("vit-tiny", LINEAR_PROBE, "colour", steps=60, seed=0)
    table = ResultsTable(summarize(run_suite({"linear probe": LINEAR_PROBE, "full": None},
                                             tasks=["colour", "size"], seeds=[0, 1, 2], steps=60)))

`harness.py` holds the runs and the table, `plots.py` the figures and the tuner explorer widget,
`multitask.py` the multi-task inference timing of Res-Tuning-Bypass, `relatives.py` what the relatives
(DiffFit, SCT, MoSA, 1-bit adapters, Hydra, SHiRA) need on top: SCT's per-task channels, bytes on disk. Importing this package is light:
torch and transformers load with the first function called.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "harness": ["LINEAR_PROBE", "FULL_FINE_TUNING", "load_task", "load_backbone", "backbone_image_size", "prepare",
                 "classification_loss", "evaluate", "tuner_parameter_count", "match_budget", "transfer", "run_suite",
                 "summarize", "ResultsTable",
                 "format_mean_std"],
    "plots": ["memory_accuracy_scatter", "ranked_methods", "task_heatmap", "learning_curves", "paper_vs_ours",
              "explore_tuner", "tuner_explorer", "res_tuning_flow", "bypass_flow", "res_attn_flow"],
    "multitask": ["multi_task_timing", "bypass_memory_comparison", "vit_backbone", "bypass_config", "res_tuning_config",
                  "VIT_B16_SHAPE", "RES_TUNING", "BYPASS", "NOT_DETACHED"],
    "relatives": ["sct_config", "run_relatives", "bytes_on_disk", "cost_accuracy_scatter"],
}
__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name: str) -> Any:
    for module, names in _EXPORTS.items():
        if name in names:
            return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module 'swiftlite.vision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
