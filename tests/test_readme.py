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


def _block(language: str, containing: str) -> str:
    return next(b for b in re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S) if containing in b)


def test_setup_block_does_not_block():
    """Pasted as a whole, the set-up block runs the tests before `jupyter lab`, which waits until stopped."""
    lines = [line for line in _block("bash", "python3 -m venv").splitlines() if line.strip()]
    assert lines[-1].startswith("jupyter lab ")
    assert not any(line.startswith("jupyter ") for line in lines[:-1])
    test_line = next(line for line in lines if "python -m pytest" in line)
    assert re.search(r"about \d+ minutes on 2 cores", test_line)


def test_zoo_build_times_are_the_shipped_stamps():
    """The README's build times (table, the `zoo build` line, the all-backbones figure) are the ones
    `swiftlite zoo build --help` prints, read from the shipped builds' stamps."""
    from swiftlite import zoo
    from swiftlite.cli import _minutes
    from swiftlite.zoo.hub import shipped_build_seconds

    text = README.read_text()
    seconds = shipped_build_seconds()
    assert set(seconds) == set(zoo.names())  # every backbone ships with its measured time
    for name, s in seconds.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.rstrip(" |").endswith(_minutes(s)), (name, row, _minutes(s))
    zoo_block = _block("bash", "swiftlite zoo build")
    build_line = next(line for line in zoo_block.splitlines() if line.startswith("swiftlite zoo build vit-tiny"))
    assert f"({_minutes(seconds['vit-tiny'])})" in build_line
    count = {3: "three", 4: "four", 5: "five"}[len(seconds)]
    assert f"without a name builds all {count} (about {_minutes(sum(seconds.values()))})" in text


def test_tutorial_01_size_claims_agree_and_hold():
    """README (twice), tutorials/README.md and the tutorial itself state one size for the SSF tuner,
    within 5 lines of its cell's count of code lines (blank and comment-only lines not counted)."""
    root = README.parent
    tutorial = (root / "tutorials/01_build_your_own_tuner.py").read_text()
    claims = (re.findall(r"~(\d+) lines", README.read_text()) + re.findall(r"~(\d+) lines", (
        root / "tutorials/README.md").read_text()) + re.findall(r"about (\d+) lines", tutorial))
    assert len(claims) == 5 and len(set(claims)) == 1, claims
    cell = tutorial[tutorial.index("@dataclass\nclass SSFConfig("):].split("# %%")[0]  # the tuner's cell
    code_lines = [line for line in cell.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert abs(len(code_lines) - int(claims[0])) <= 5, (len(code_lines), claims[0])


def test_zoo_example_prompt_is_one_unet_tiny_follows():
    """The README's unet-tiny prompt names no position (the model ignores positions), and the shipped
    full build draws its shape and colour in at least 7 of 8 seeded samples, as the zoo's judge sees them."""
    import torch

    from swiftlite import zoo
    from swiftlite.data.shapes import COLOURS, POSITIONS, SHAPES
    from swiftlite.zoo.unet import load_judge

    prompt = re.search(r'pipe\(\["([^"]+)"\]', _block("python", "pipe([")).group(1)
    assert not any(word in prompt.split() for p in POSITIONS for word in p.split())
    shape, colour = next(s for s in SHAPES if s in prompt), next(c for c in COLOURS if c in prompt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = zoo.load("unet-tiny", quick=False, progress=False)  # the shipped build, as the README loads it
        images = pipe([prompt] * 8, guidance_scale=1.5, seed=0)
    finally:
        torch.set_num_threads(threads)
    shapes, colours = load_judge(zoo.path("unet-tiny", quick=False)).predict(images)
    assert sum(s == shape and c == colour for s, c in zip(shapes, colours)) >= 7, (shapes, colours)


def test_layout_names_every_module_of_the_package():
    """README's Layout section and the package tree agree: every subpackage and every module file of
    swiftlite/ is named there (by its path, its file name, or its stem in a package's list)."""
    text = README.read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    package = Path(__file__).resolve().parents[1] / "swiftlite"
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        if path.name == "__init__.py":
            if path.parent != package and f"{path.parent.name}/" not in layout:
                missing.append(rel)
        elif not re.search(rf"(?<![\w/]){re.escape(path.name)}\b|\b{re.escape(path.stem)}\b", layout):
            missing.append(rel)
    assert missing == [], f"README's Layout does not name: {missing}"


def test_stylebooth_and_largen_example_runs(monkeypatch):
    """The StyleBooth / LAR-Gen block as written, on the quick sd-tiny with its sizes and steps made small."""
    monkeypatch.setenv("SWIFTLITE_QUICK", "1")
    code = _block("python", "train_stylebooth")
    small = {"render_pairs(600": "render_pairs(8", "steps=300": "steps=2", "inpaint_dataset(3000": "inpaint_dataset(8",
             "steps=250": "steps=2", "align_steps=1000": "align_steps=2"}
    for big, tiny in small.items():
        assert big in code, big
        code = code.replace(big, tiny)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["by_word"].shape == namespace["by_exemplar"].shape == namespace["filled"].shape == (4, 32, 32, 3)
    assert type(namespace["pipe"]).__name__ == "StableDiffusionPipeline"
