"""The package surface: every listed name exists, every tuner file is imported by name."""
import importlib
import pkgutil
from pathlib import Path

import swiftlite
import swiftlite.tuners
from swiftlite.core import TUNERS

TUNERS_DIR = Path(swiftlite.tuners.__file__).parent


def test_dir_lists_only_names_that_resolve():
    names = dir(swiftlite)
    assert {"tuners", "testing", "core", "show", "check_finite", "get_tuner"} <= set(names)
    for name in names:
        assert getattr(swiftlite, name) is not None, name
    for gone in ("kernels", "diffusion", "vision"):  # planned, not written yet
        assert (gone in names) == (Path(swiftlite.__file__).parent / gone).exists()


def test_tuners_init_has_no_generated_names():
    assert "globals()" not in (TUNERS_DIR / "__init__.py").read_text()


def test_every_registered_tuner_is_a_public_name():
    """Import every file of swiftlite/tuners (helpers too): each tuner it registers must be exported by name."""
    for module in pkgutil.iter_modules([str(TUNERS_DIR)]):
        importlib.import_module(f"swiftlite.tuners.{module.name}")
    for swift_type, tuner in TUNERS.items():
        if swift_type.startswith("_") or not tuner.__module__.startswith("swiftlite.tuners."):
            continue
        for cls in (tuner, tuner.config_class):
            assert cls.__name__ in swiftlite.tuners.__all__, f"add `from {tuner.__module__[16:]} import ...` to tuners/__init__.py"
            assert getattr(swiftlite.tuners, cls.__name__) is cls
            assert getattr(swiftlite, cls.__name__) is cls
