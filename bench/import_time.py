"""Cold start of the command line and of ``import dlabel_lab``.

Each command runs in a fresh interpreter, interleaved with the others, so
that load on the machine hits every arm alike. The baseline is the cheapest
thing the package cannot avoid: ``python -c "import duckdb"`` (the store's
engine). "eager" touches every public name, which is what ``import
dlabel_lab`` cost before the names were made lazy.

Run:
    .venv/bin/python bench/import_time.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ARMS = {
    'python -c "pass"': [sys.executable, "-c", "pass"],
    'python -c "import duckdb"': [sys.executable, "-c", "import duckdb"],
    'python -c "import dlabel_lab"': [sys.executable, "-c", "import dlabel_lab"],
    "dlabel-lab --help": [str(BIN / "dlabel-lab"), "--help"],
    "dlabel-lab ingest --help": [str(BIN / "dlabel-lab"), "ingest", "--help"],
    "dlabel-lab retrain --help": [str(BIN / "dlabel-lab"), "retrain", "--help"],
    "dlabel-lab demo --help": [str(BIN / "dlabel-lab"), "demo", "--help"],
    "dlabel-lab retrain S --epochs x (bad arg)": [str(BIN / "dlabel-lab"), "retrain", "S", "--epochs", "x"],
    "eager: every public name": [sys.executable, "-c",
                                 "import dlabel_lab as dl; [getattr(dl, n) for n in dl.__all__]"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in ARMS}
    for _ in range(args.repeats):
        for name, cmd in ARMS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times['python -c "import duckdb"'])
    print(f"cold start, {args.repeats} interleaved repeats each; seconds")
    print(f"{'command':<44}{'median':>8}{'min':>8}{'max':>8}{'vs duckdb':>11}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<44}{med:>8.3f}{min(ts):>8.3f}{max(ts):>8.3f}{med / base:>10.2f}x")
    worst_help = max(max(ts) for name, ts in times.items() if name.startswith("dlabel-lab"))
    print(f"slowest single dlabel-lab run: {worst_help:.3f} s (goal: well under 2 s)")


if __name__ == "__main__":
    main()
