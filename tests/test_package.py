"""The package surface: one table of exported names, each of which resolves; every tuner exported by name."""
import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import swiftlite
import swiftlite.tuners
from swiftlite.core import TUNERS, SwiftConfig

TUNERS_DIR = Path(swiftlite.tuners.__file__).parent
INIT = Path(swiftlite.__file__)


def _literal_exports() -> dict:
    """{name: module} from `_EXPORTS` as written in swiftlite/__init__.py: a literal {module: names} table, so a
    reader (and grep) sees every name; no name is listed twice."""
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_EXPORTS":
            table = ast.literal_eval(node.value)
            names = [name for names in table.values() for name in names]
            assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
            return {name: module for module, names in table.items() for name in names}
    raise AssertionError("swiftlite/__init__.py has no literal _EXPORTS table")


def test_every_name_in_the_table_resolves_from_its_module():
    table = _literal_exports()
    for name, module_path in table.items():
        module = importlib.import_module(module_path)
        expected = importlib.import_module(f"swiftlite.{name}") if module_path == "swiftlite" else getattr(module, name)
        assert getattr(swiftlite, name) is expected, name
    assert set(dir(swiftlite)) == set(table) | {"__version__"}


def test_every_subpackage_and_module_is_in_the_table():
    on_disk = {m.name for m in pkgutil.iter_modules(swiftlite.__path__) if not m.name.startswith("_")}
    table = _literal_exports()
    missing = sorted(n for n in on_disk if table.get(n) != "swiftlite")
    assert not missing, f"add {missing} to _EXPORTS in swiftlite/__init__.py"


def test_nothing_private_or_unlisted_leaks():
    import swiftlite.tuners.lora  # noqa: F401  (a submodule of tuners: no longer reachable as swiftlite.lora)

    for name in ("lora", "annotations", "importlib", "Any", "TUNERS", "io", "config", "LoRALinear", "_secret"):
        assert name not in _literal_exports()
        try:
            value = getattr(swiftlite, name)
        except AttributeError:
            continue
        raise AssertionError(f"swiftlite.{name} resolved to {value!r} though it is not exported")


def test_every_registered_tuner_and_its_config_is_exported_and_in_dir():
    """Import every file of swiftlite/tuners (helpers too): each tuner it registers must be exported by name,
    from swiftlite.tuners and from swiftlite, and listed by dir(swiftlite) (tab completion finds LoRAConfig)."""
    for module in pkgutil.walk_packages([str(TUNERS_DIR)], prefix="swiftlite.tuners."):
        importlib.import_module(module.name)
    registered = [t for k, t in TUNERS.items() if not k.startswith("_") and t.__module__.startswith("swiftlite.tuners.")]
    assert len(registered) >= 16
    for tuner in registered:
        for cls in (tuner, tuner.config_class):
            assert cls.__name__ in swiftlite.tuners.__all__, f"add `from {tuner.__module__[16:]} import ...` to tuners/__init__.py"
            assert getattr(swiftlite.tuners, cls.__name__) is cls
            assert cls.__name__ in dir(swiftlite), f"add {cls.__name__} to _EXPORTS in swiftlite/__init__.py"
            assert getattr(swiftlite, cls.__name__) is cls
    configs = {c.__name__ for c in vars(swiftlite.tuners).values() if isinstance(c, type) and issubclass(c, SwiftConfig)}
    assert configs - {"SwiftConfig"} <= set(dir(swiftlite))


def test_tuners_init_has_no_generated_names_and_no_facade():
    text = (TUNERS_DIR / "__init__.py").read_text()
    assert "globals()" not in text
    assert not hasattr(swiftlite.tuners, "Swift") and not hasattr(swiftlite.tuners, "SwiftModel")
    core = importlib.import_module("swiftlite.core")
    assert not hasattr(core, "Swift") and not hasattr(core, "SwiftModel")


def test_import_swiftlite_is_light():
    """In a fresh interpreter: `import swiftlite` and `dir()` load neither torch nor any swiftlite submodule."""
    code = ("import sys, swiftlite; dir(swiftlite); "
            "print(sorted(m for m in sys.modules if m in ('torch', 'transformers', 'diffusers') "
            "or m.startswith('swiftlite.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=INIT.parent.parent).stdout.strip()
    assert out == "[]", out


def test_config_name_is_defined_once():
    defined = [p for p in INIT.parent.rglob("*.py") if "CONFIG_NAME = " in p.read_text()]
    assert [p.relative_to(INIT.parent).as_posix() for p in defined] == ["core/io.py"]


def _local_swiftlite_imports_without_a_reason() -> list[str]:
    """Imports of swiftlite modules inside functions with no comment saying why (on the line, or in
    the few lines just above it: one comment may cover a block of imports)."""
    found = []
    for path in sorted(Path(swiftlite.__file__).parent.rglob("*.py")):
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("swiftlite")):
                    at = node.lineno - 1
                    window = lines[max(0, at - 8):at + 1]
                    if not any("#" in line for line in window):
                        found.append(f"{path.name}:{node.lineno}: {lines[at].strip()}")
    return found


def test_swiftlite_imports_sit_at_module_tops_unless_a_comment_says_why():
    assert _local_swiftlite_imports_without_a_reason() == []
