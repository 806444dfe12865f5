"""The README's example must run as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert type(namespace["merged"]).__name__ == "LlamaForCausalLM"
    assert (tmp_path / "out/peft/adapter_config.json").exists()


def test_ci_runs_the_readme_test_command():
    command = re.search(r"^(SWIFTLITE_QUICK=1 python -m pytest[^\n#]*?)\s*(#.*)?$", README.read_text(), re.M).group(1)
    ci = (README.parent / ".ci/run").read_text()
    assert command.strip() in ci.splitlines()
