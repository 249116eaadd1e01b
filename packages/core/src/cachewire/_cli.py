"""The ``cachewire`` command line (also ``python -m cachewire``)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("cachewire")
    except metadata.PackageNotFoundError:  # running from a source tree
        from cachewire import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="cachewire", description="cachewire tools")
    parser.add_argument("--version", action="version", version=f"cachewire {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser("demo", help="show what cachewire does, on embedded defaults")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from cachewire._demo import run_demo

        return run_demo()
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
