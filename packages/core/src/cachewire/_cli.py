"""The ``cachewire`` command line."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cachewire", description="cachewire tools")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="show what cachewire does, on embedded defaults")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from cachewire._demo import run_demo

        return run_demo()
    return 2


if __name__ == "__main__":
    sys.exit(main())
