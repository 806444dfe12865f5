"""Procedural and bundled datasets, returned as ``datasets.Dataset``; nothing is downloaded.

- :mod:`.shapes`: the shapes world (images with labels, captions, masks, edges, depth; styles
  and plain/stylized pairs).
- :mod:`.scenes`: 32-px scenes of one or two shapes-world objects with styles, named sizes, positions
  and backgrounds (what ``sd-tiny`` is trained on).
- :mod:`.tasks`: a tiny VTAB-like suite of downstream classification tasks (shapes + digits).
- :mod:`.text`: the Python standard library as a text corpus and a byte-level BPE tokenizer.
- :mod:`.instructions`: instruction / response pairs with computed answers.
- :mod:`.tools`: ReAct tool-use dialogs over deterministic tools, with gold actions.
- :mod:`.vqa`: shapes-world scenes of 1-3 objects with captions and visual questions.
"""

from .instructions import INSTRUCTION_TASKS, instruction_pairs
from .shapes import (BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, STYLES, render, sample_content,
                     shapes_dataset, style_pairs, to_pixel_values, to_uint8_images, world_prompts)
from .scenes import SCENE_STYLES, scenes_dataset
from .tasks import TASK_GROUPS, TASKS, downstream_task, vtab_suite
from .text import stdlib_tokenizer, text_corpus, train_tokenizer
from .tools import TOOLS, parse_react, render_react, run_tool, tool_dialogs
from .vqa import QTYPES, vqa_dataset

__all__ = [
    "SHAPES", "COLOURS", "SIZES", "POSITIONS", "BACKGROUNDS", "STYLES", "render", "sample_content",
    "shapes_dataset", "style_pairs", "to_pixel_values", "to_uint8_images", "world_prompts", "scenes_dataset", "SCENE_STYLES",
    "TASKS", "TASK_GROUPS", "downstream_task", "vtab_suite",
    "text_corpus", "train_tokenizer", "stdlib_tokenizer",
    "INSTRUCTION_TASKS", "instruction_pairs",
    "TOOLS", "run_tool", "tool_dialogs", "render_react", "parse_react",
    "QTYPES", "vqa_dataset",
]
