#!/usr/bin/env python3
"""Set-up and everyday tasks with nothing but Python 3.

    python3 tasks.py demo    # the main job: the whole loop on sample clips
    python3 tasks.py test    # the test suite, notebooks included (nbval)
    python3 tasks.py lab     # JupyterLab on notebooks/
    python3 tasks.py bench   # the benchmarks in bench/
    python3 tasks.py lint    # ruff
    python3 tasks.py data    # regenerate the committed sample in data/

Each task creates ``.venv`` and installs the package with its pinned
constraints (``constraints.txt``) when they are missing or changed.
Extra arguments after the task are passed on (e.g. ``tasks.py test -k store``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".dlabel-installed"


def _run(*cmd: str | os.PathLike) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    rc = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if rc:
        sys.exit(rc)


def ensure_env() -> Path:
    """Create .venv and install the pinned set when missing or out of date."""
    py = BIN / "python"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes())
    if not py.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    if not STAMP.exists() or STAMP.read_text() != want.hexdigest():
        _run(py, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        _run(py, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", ".[dev]")
        STAMP.write_text(want.hexdigest())
    return py


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return
    task, extra = argv[0], argv[1:]
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if task == "demo":
        ensure_env()
        _run(BIN / "dlabel-lab", "demo", *extra)
    elif task == "test":
        py = ensure_env()
        _run(py, "-m", "ruff", "check", "dlabel_lab", "tests", "bench", "tasks.py")
        targets = ["tests"] + (["notebooks"] if any((ROOT / "notebooks").glob("*.ipynb")) else [])
        _run(py, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", *targets, *extra)
    elif task == "lab":
        ensure_env()
        _run(BIN / "jupyter", "lab", "notebooks", *extra)
    elif task == "bench":
        py = ensure_env()
        for script in sorted((ROOT / "bench").glob("*.py")):
            _run(py, script, *extra)
    elif task == "lint":
        py = ensure_env()
        _run(py, "-m", "ruff", "check", ".", *extra)
    elif task == "data":
        py = ensure_env()
        ensure_env()
        _run(BIN / "dlabel-lab", "samples", "data")
    else:
        sys.exit(f"unknown task {task!r}; run `python3 tasks.py help`")


if __name__ == "__main__":
    main(sys.argv[1:])
