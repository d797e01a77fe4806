"""``syncproof models``: list the parametric models, their parameters and faults."""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any


def registry() -> Any:
    """``syncproof.models.registry``, imported when needed (models/ is a separate
    source folder, installed as ``syncproof.models``)."""
    return importlib.import_module("syncproof.models.registry")


def register(sub: Any) -> None:
    c = sub.add_parser(
        "models", help="list the parametric models, their parameters and faults",
        description="List the models that `syncproof check --model` and `syncproof sweep` build: one line per"
        " model, then one line per parameter (default and range) and per fault (the property it breaks).",
    )
    c.add_argument("names", nargs="*", metavar="NAME", help="only these models")
    c.add_argument("--format", default="text", choices=["text", "json"])
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    reg = registry()
    specs = [reg.get(n) for n in args.names] if args.names else reg.list_models()
    if args.format == "json":
        print(json.dumps([s.to_json() for s in specs], indent=2))
        return 0
    for spec in specs:
        print(f"{spec.name}: {spec.summary}")
        for p in spec.params:
            print(f"  --set {p.name + '=' + str(p.default):<22} {p.range_text:<22} {p.help}")
        for f in spec.faults:
            needs = f"  (needs {f.needs_text})" if f.needs else ""
            print(f"  --fault {f.name:<20} breaks {f.breaks:<9} {f.help}{needs}")
        print()
    print(f"{len(specs)} models; check one with: syncproof check --model NAME [--set KEY=VALUE ...] [--fault NAME]")
    return 0
