"""The project's set-up files agree with each other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import dlabel_lab as dl

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the package itself needs 3.10+

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[;\s]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {r for r in pip if not r.startswith("-")}
    assert listed == wanted
    assert "-e .[dev]" in pip and "-c constraints.txt" in pip


def test_constraints_pin_torch_and_every_dependency():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version
    assert pins["torch"] == "2.14.1"
    assert pins["torchvision"] == "0.29.1"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert _name(req) in pins, f"{req} is not pinned in constraints.txt"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 tasks.py test" in readme
    assert "python3 tasks.py test" in ci
    assert "python3 tasks.py demo" in readme


def test_public_names_are_importable():
    for name in ("read_clip", "ClipSpec", "Clip", "make_shape_clips", "load_digit_clips", "DLabelError",
                 "MediaError", "TruncatedMedia", "UnsafeSource", "MediaTooLarge", "EmptyMedia", "MissingMedia",
                 "UnsupportedMedia", "StoreError"):
        assert hasattr(dl, name), name
    assert set(dl.__all__) <= set(dir(dl))
