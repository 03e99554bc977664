"""The package's shape: dependencies point one way, and importing it is light.

The wings and their order (an arrow may only point to a lower rank, or stay
inside its own wing):

    cli  ->  widgets, demo, remote  ->  loop, estimate, quality  ->  explain, labeling, interop  ->  train, serving
        ->  models, objects, evaluation, plots  ->  store, media  ->  errors, lazy

``explain`` sits above ``train`` because derived transformation parameters
are a ``train`` type; ``media`` and ``store`` share a rank and so may not
import each other; ``store`` imports no torch code at all.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import dlabel_lab as dl

PACKAGE = Path(dl.__file__).resolve().parent

RANK = {
    "errors": 0, "lazy": 0,
    "media": 1, "store": 1,
    "models": 2, "objects": 2, "evaluation": 2, "plots": 2,
    "train": 3, "serving": 3,
    "explain": 4, "labeling": 4, "interop": 4,
    "loop": 5, "estimate": 5, "quality": 5,
    "widgets": 6, "demo": 6, "remote": 6,
    "cli": 7,
}
HEAVY = ("torch", "pytorch_lightning", "lightning", "captum", "torchvision", "matplotlib", "ipywidgets")
TORCH_FAMILY = ("torch", "torchvision", "torchmetrics", "pytorch_lightning", "lightning", "captum", "safetensors")


def _wing_of(parts: list[str]) -> str:
    """``['store', 'io']`` -> ``'store'``; ``['loop']`` -> ``'loop'``."""
    return parts[0]


def _module_parts(path: Path) -> list[str]:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path) -> list[tuple[int, list[str] | None, str]]:
    """(line, target parts inside dlabel_lab or None, absolute top-level name) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = _module_parts(path)
    package = parts if path.name == "__init__.py" else parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                found.append((node.lineno, names[1:] if names[0] == "dlabel_lab" else None, names[0]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from .. import x" at the top: x is the module
                    target = [node.names[0].name]
                found.append((node.lineno, target, "dlabel_lab"))
            else:
                names = (node.module or "").split(".")
                found.append((node.lineno, names[1:] if names[0] == "dlabel_lab" else None, names[0]))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_belongs_to_a_ranked_wing():
    unranked = {_wing_of(_module_parts(p)) for p in _modules() if _module_parts(p)} - set(RANK)
    assert not unranked, f"give these a rank in RANK (and in the docstring): {sorted(unranked)}"


def test_no_private_module_at_the_top_of_the_package():
    private = [p.name for p in PACKAGE.glob("_*.py") if p.name != "__init__.py"]
    assert not private, f"private helpers belong inside their wing: {private}"


def test_imports_point_one_way():
    bad = []
    for path in _modules():
        parts = _module_parts(path)
        if not parts:  # the package __init__ re-exports lazily by name only
            continue
        wing = _wing_of(parts)
        for line, target, top in _imports(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if wing == "store" and top in TORCH_FAMILY:
                bad.append(f"{where} store imports {top}")
            if target is None or not target:
                continue
            other = _wing_of(target)
            if other == wing or other == "lazy":
                continue
            if other not in RANK or RANK[other] >= RANK[wing]:
                bad.append(f"{where} {wing} (rank {RANK[wing]}) imports {'.'.join(target)} "
                           f"(rank {RANK.get(other)})")
    assert not bad, "imports against the wing order:\n" + "\n".join(bad)


def test_the_rule_catches_an_upward_arrow(tmp_path, monkeypatch):
    """The checker itself fails on a store module that imports the loop or torch."""
    fake = PACKAGE / "store" / "_layout_probe.py"
    monkeypatch.setattr(sys.modules[__name__], "_modules", lambda: [fake])
    fake.write_text("import torch\nfrom ..loop import run_loop\n")
    try:
        with pytest.raises(AssertionError) as info:
            test_imports_point_one_way()
    finally:
        fake.unlink()
    assert "store imports torch" in str(info.value)
    assert "imports loop" in str(info.value)


def _run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_PROBE = """
import json, sys
{body}
print(json.dumps({{"heavy": sorted(m for m in {heavy!r} if m in sys.modules), "result": result}}))
"""


def test_import_dlabel_lab_loads_no_heavy_library():
    body = "import dlabel_lab as dl\nresult = [dl.DLabelError.__name__, len(dl.__all__)]"
    got = _run(_PROBE.format(body=body, heavy=HEAVY))
    assert got["heavy"] == []
    assert got["result"] == ["DLabelError", len(dl.__all__)]


def test_the_store_loads_no_torch():
    body = "import dlabel_lab as dl\nresult = dl.PayloadStore.__name__"
    got = _run(_PROBE.format(body=body, heavy=HEAVY))
    assert got == {"heavy": [], "result": "PayloadStore"}


def test_every_public_name_resolves_and_heavy_ones_load_on_use():
    body = ("import dlabel_lab as dl\nbefore = 'torch' in sys.modules\nspec = dl.ClipSpec(frames=4, size=32)\n"
            "result = [before, 'torch' in sys.modules, [n for n in dl.__all__ if getattr(dl, n, None) is None]]")
    got = _run(_PROBE.format(body=body, heavy=HEAVY))
    assert got["result"] == [False, True, []]
    assert dl.evaluate.__module__ == "dlabel_lab.evaluation"  # the function, not a module of the same name


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        dl.not_a_name  # noqa: B018


_CLI = """
import json, sys
from dlabel_lab.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({{"heavy": sorted(m for m in {heavy!r} if m in sys.modules), "code": code}}))
"""


@pytest.mark.parametrize("argv", [
    ["--help"], ["demo", "--help"], ["ingest", "--help"], ["retrain", "--help"], ["export", "--help"],
    ["versions", "--help"], ["read", "--help"], ["samples", "--help"],
    ["retrain", "somewhere", "--epochs", "many"],  # a bad argument is refused before anything heavy loads
    ["retrain", "somewhere", "--epochs", "0"],
    ["no-such-command"],
])
def test_cli_help_and_bad_arguments_load_no_heavy_library(argv):
    out = subprocess.run([sys.executable, "-c", _CLI.format(heavy=HEAVY), *argv], capture_output=True, text=True,
                         timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == []
    assert got["code"] == (0 if argv[-1] == "--help" else 2)
    if argv[-1] != "--help":
        assert "error" in out.stderr
