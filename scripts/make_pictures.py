"""Draw the counterexamples of the bundled broken examples into docs/img/.

    .venv/bin/python scripts/make_pictures.py            # writes docs/img/
    .venv/bin/python scripts/make_pictures.py --out DIR  # somewhere else
    .venv/bin/python scripts/make_pictures.py --only tp-allreduce-nowait

For every example in examples/ that has a counterexample, and every violated
property of it, writes ``<name>.<property>.svg`` with the repair hint under
the title, exactly as ``syncproof check --out`` draws it; the one the README
shows (``tp-allreduce-nowait.dataflow``) also as PNG.  It also draws the
litmus schedules in ``LITMUS_PICTURES`` (tests/litmus/), which
docs/rendering.md shows for the runtime model v2: blocking links of a
deadlock, a progress cycle across communicators, a wrong value carried by a
message, a group call, a put.  The pictures in docs/img/ are made by this
script, never by hand: run it again after a change to the renderer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syncproof import check_schedule, load
from syncproof.engine.repair import hint_for
from syncproof.render.dot import counterexample_dot
from syncproof.render.picture import PictureError, render

ROOT = Path(__file__).resolve().parent.parent
README_PICTURE = "tp-allreduce-nowait.dataflow"
LITMUS_PICTURES = (  # (litmus schedule, property): drawn as SVG and PNG
    ("exchange-no-batch", "deadlock"),
    ("crossed-communicators", "deadlock"),
    ("kv-swapped-one-fifo", "dataflow"),
    ("batch-relay", "dataflow"),
    ("put-no-wait", "race"),
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="directory (default docs/img)")
    p.add_argument("--only", metavar="NAME", action="append", help="only this example (repeatable)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    made = 0
    litmus = {name: prop for name, prop in LITMUS_PICTURES}
    paths = sorted((ROOT / "examples").glob("*.json")) + [ROOT / "tests" / "litmus" / f"{n}.json" for n in litmus]
    for path in paths:
        if args.only and path.stem not in args.only:
            continue
        s = load(path)
        rep = check_schedule(s)
        for r in rep.results:
            if r.counterexample is None or (path.stem in litmus and r.property != litmus[path.stem]):
                continue
            hint = hint_for(s, r, rep)
            dot = counterexample_dot(s, r.counterexample, hint=hint.line() if hint else None)
            base = f"{s.name}.{r.property}"
            try:
                (args.out / f"{base}.svg").write_bytes(render(dot, "svg"))
                if base == README_PICTURE or path.stem in litmus:
                    (args.out / f"{base}.png").write_bytes(render(dot, "png"))
            except PictureError as exc:
                print(f"make_pictures: {exc}", file=sys.stderr)
                return 1
            made += 1
            print(f"{args.out / base}.svg")
    return 0 if made else 1


if __name__ == "__main__":
    sys.exit(main())
