"""The real ms-swift loads what swiftlite saved (skipped unless ms-swift is installed).

See ms_swift_loads_swiftlite.py beside this file; tests/fixtures/ms_swift/README.md has how to set
up the ms-swift venv and the last recorded result.
"""
from __future__ import annotations

import pytest

pytest.importorskip("swift.tuners", reason="ms-swift is not installed (it lives in a throw-away venv, see README)")

from tests.interop import ms_swift_loads_swiftlite as interop  # noqa: E402

CASES = ["lora", "lora_dora", "lora_modules_to_save", "adapter", "prompt", "side", "part", "llamapro",
         "two_adapters", "extra_state_keys", "lora_rank_alpha_pattern", "restuning"]


def test_cases_cover_the_script():
    assert CASES == list(interop.cases())


@pytest.mark.parametrize("name", CASES)
def test_ms_swift_loads_swiftlite_checkpoint(name):
    status, detail = interop.check(name)
    assert status == "match", detail
