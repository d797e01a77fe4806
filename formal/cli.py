"""The ``syncproof`` command line.

Each subcommand lives in ``syncproof.commands.<name>`` and registers itself;
the CLI imports result types and renderers only, the solver is loaded when a
check runs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from . import __version__
from .apiguard import short_repr
from .commands.common import EXIT_CODES, EXIT_ERROR, EXIT_INTERNAL
from .errors import InternalError, UserError

# Subcommands, in the order `--help` lists them.
COMMANDS = ("check", "minimize", "capture", "convert", "render", "models", "prove", "sweep", "bench")
# `syncproof import <kind>`: modules syncproof.commands.import_<kind>.
IMPORTERS = ("torch_pp", "flight_recorder", "profiler")


def _module(name: str) -> ModuleType | None:
    """A command module, or None while it is not written yet."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="syncproof",
        description="Prove synchronization and ordering of multi-device inference schedules, "
        "or show a concrete run that breaks them.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"syncproof {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _module(f"syncproof.commands.{name}")
        if mod is not None:
            mod.register(sub)
    importers = [m for m in (_module(f"syncproof.commands.import_{k}") for k in IMPORTERS) if m is not None]
    if importers:
        imp = sub.add_parser("import", help="turn traces and other tools' schedules into syncproof schedules",
                             description="Import schedules from other tools.", epilog=EXIT_CODES,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        isub = imp.add_subparsers(dest="importer", metavar="KIND")
        for mod in importers:
            mod.register(isub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its
    exit code.  Bad usage exits 2 (argparse raises ``SystemExit(2)`` for
    arguments it cannot parse), never 4."""
    if argv is not None and (isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence)
                             or not all(isinstance(a, str) for a in argv)):
        print(f"syncproof: error: main() takes a list of argument strings, got {short_repr(argv)}",
              file=sys.stderr)
        return EXIT_ERROR
    parser = _parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(func(args))
    except UserError as exc:
        print(f"syncproof: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except InternalError as exc:
        print(f"syncproof: internal error (a bug in syncproof, please report it): {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("syncproof: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # the reader of our output went away (`syncproof ... | head`): nothing more to say to it.
        # Python would complain again when it flushes stdout at exit, so point stdout at nothing
        import os

        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001  any other exception is a bug: exit 4, never 1 ("counterexample")
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"syncproof: internal error (a bug in syncproof, please report it): {type(exc).__name__}: {exc}"
              f" (at {Path(where.filename).name}:{where.lineno})", file=sys.stderr)
        return EXIT_INTERNAL


def entry() -> None:
    """The console command ``syncproof``: :func:`main`, then exit with its code
    (at once, without freeing a big checked schedule: see quickexit)."""
    from . import quickexit

    quickexit.enable()
    quickexit.leave(main())


if __name__ == "__main__":
    entry()
