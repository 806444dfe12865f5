"""The conformance kit over every registered tuner and every tiny model family.

CASES maps a tuner's swift_type to {model family: config factory}. A family left out must be
listed in NOT_APPLICABLE with the reason. Adding a tuner without an entry here fails
`test_every_registered_tuner_has_cases`, so no tuner escapes the kit.
"""
import pytest

import swiftlite.tuners  # noqa: F401  (registers every tuner)
from swiftlite.core import TUNERS
from swiftlite.testing import check_tuner, models

T = swiftlite.tuners
FAMILIES = ["mlp", "cnn", "bert", "llama", "gpt2", "vit", "unet"]

CASES = {
    "LORA": {
        "mlp": lambda: T.LoRAConfig(target_modules=["fc1", "fc2", "head"]),
        "bert": lambda: T.LoRAConfig(target_modules=["query", "value"]),
        "llama": lambda: T.LoRAConfig(target_modules=["q_proj", "v_proj", "down_proj"]),
        "vit": lambda: T.LoRAConfig(target_modules=["query", "value"]),
        "unet": lambda: T.LoRAConfig(target_modules=["to_q", "to_v"]),
    },
}

NOT_APPLICABLE: dict[str, dict[str, str]] = {}


def _public_tuners():
    return sorted(t for t in TUNERS if not t.startswith("_"))


def test_every_registered_tuner_has_cases():
    for swift_type in _public_tuners():
        covered = set(CASES.get(swift_type, {})) | set(NOT_APPLICABLE.get(swift_type, {}))
        assert swift_type in CASES, f"{swift_type}: add conformance cases to tests/test_conformance.py"
        assert covered == set(FAMILIES), f"{swift_type}: families without a case or a reason: {set(FAMILIES) - covered}"


@pytest.mark.parametrize(
    "swift_type,family",
    [(t, f) for t in sorted(CASES) for f in FAMILIES if f in CASES[t]],
)
def test_conformance(swift_type, family, tmp_path):
    check_tuner(CASES[swift_type][family], getattr(models, family), tmp_path=str(tmp_path))
