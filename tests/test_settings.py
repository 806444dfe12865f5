"""swiftlite.settings: one rule for SWIFTLITE_QUICK (used by the zoo, the metrics' cache and viz's figure
folder alike) and one cache folder."""
from pathlib import Path

import pytest

from swiftlite import settings, viz, zoo


@pytest.mark.parametrize("value, quick", [(None, False), ("", False), ("0", False), ("false", False), ("No", False),
                                          ("off", False), ("1", True), ("true", True), (" YES ", True), ("on", True)])
def test_quick_mode_reads_one_rule_everywhere(monkeypatch, tmp_path, value, quick):
    monkeypatch.delenv("SWIFTLITE_FIGURES", raising=False)
    if value is None:
        monkeypatch.delenv("SWIFTLITE_QUICK", raising=False)
    else:
        monkeypatch.setenv("SWIFTLITE_QUICK", value)
    assert settings.quick_mode() is quick
    assert zoo.quick_mode() is quick  # the zoo re-exports the same function
    monkeypatch.chdir(tmp_path)
    assert (viz.figures_dir().name == "quick") is quick  # quick runs write figures to figures/quick/
    assert settings.quick_mode(not quick) is (not quick)  # an explicit argument wins over the environment


def test_an_unknown_quick_value_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SWIFTLITE_QUICK", "maybe")
    with pytest.raises(ValueError, match=r"SWIFTLITE_QUICK='maybe'.*'1'.*'0'"):
        settings.quick_mode()


def test_cache_dir_follows_swiftlite_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SWIFTLITE_CACHE", str(tmp_path / "c"))
    assert settings.cache_dir() == tmp_path / "c"
    assert zoo.cache_path("vit-tiny", quick=True).is_relative_to(tmp_path / "c")
    monkeypatch.delenv("SWIFTLITE_CACHE")
    assert settings.cache_dir().name == "swiftlite" and settings.cache_dir() != Path(tmp_path / "c")
