"""``python -m f2n.cpp_ext build``: compile the fused RRDB extension into the cache."""

import argparse
import sys
import time
from pathlib import Path

from f2n.cpp_ext.dispatch import load
from f2n.errors import F2NError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f2n.cpp_ext", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="compile (or find in the cache) and load the extension")
    build.add_argument("--build-dir", type=Path, default=None, help="default: $F2N_HOME/cpp_ext/<key>")
    build.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=None,
                       help="build the CUDA kernels (default: when torch sees a GPU)")
    build.add_argument("--verbose", action="store_true", help="show the compiler output")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        library = load(build=True, build_dir=args.build_dir, cuda=args.cuda, verbose=args.verbose)
    except F2NError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"built {library} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
