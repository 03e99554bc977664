"""The ``dlabel-lab`` command.

Example:
    $ dlabel-lab demo --store runs/demo
    $ dlabel-lab samples data
    $ dlabel-lab read data/shapes/train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import DLabelError


def _cmd_samples(args) -> int:
    from .samples import write_sample_data

    for name, manifest in write_sample_data(args.root).items():
        print(f"{name:<22} {manifest}")
    return 0


def _cmd_read(args) -> int:
    from .samples import read_manifest
    from .video import ClipSpec, clip_stats, read_clip, to_tensor

    spec = ClipSpec(frames=args.frames, size=args.size)
    rows = read_manifest(args.manifest)
    print(f"{'clip':<18}{'label':<10}{'codec':<6}{'frames':>7}{'fps':>6}{'size':>9}  {'bright':>6}{'contr':>6}"
          f"{'motion':>7}{'blur':>6}")
    for r in rows[: args.limit]:
        clip = read_clip(r["path"], spec)
        x, _ = to_tensor(clip)
        s = clip_stats(clip)
        print(f"{Path(r['path']).name:<18}{r['label']:<10}{clip.codec:<6}{clip.frame_count:>7}{clip.fps:>6.1f}"
              f"{clip.width:>5}x{clip.height:<3}  {s.brightness:>6.2f}{s.contrast:>6.2f}{s.motion:>7.3f}{s.blur:>6.2f}"
              f"  -> tensor {tuple(x.shape)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlabel-lab", description="The data-labelling loop for video models.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("samples", help="write the sample clips (shapes, drifted shapes, digits)")
    s.add_argument("root", nargs="?", default="data")
    s.set_defaults(func=_cmd_samples)
    r = sub.add_parser("read", help="read the clips of a manifest and report them")
    r.add_argument("manifest")
    r.add_argument("--frames", type=int, default=8)
    r.add_argument("--size", type=int, default=112)
    r.add_argument("--limit", type=int, default=12)
    r.set_defaults(func=_cmd_read)
    try:
        from .demo import add_demo_parser
    except ImportError:  # the loop modules are optional at this stage
        add_demo_parser = None
    if add_demo_parser is not None:
        add_demo_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dlabel-lab`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DLabelError as e:
        print(f"dlabel-lab: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
