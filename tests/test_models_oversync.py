"""The project's own models have no unreported redundant sync (issue 14):
every model's default schedule is examined with ``find_redundant``, and the
syncs it finds redundant must be exactly the ones docs/models.md lists under
"Known redundant syncs" (each with the reason it is redundant).  A model
change that adds a redundant sync, or makes a listed one needed, fails here."""

from __future__ import annotations

import pytest

from syncproof.engine.redundant import find_redundant
from syncproof.models.registry import build, list_models

# model -> the labels of the syncs of its default schedule that are redundant (docs/models.md)
KNOWN: dict[str, set[str]] = {
    'pp': {
        'r1/compute: wait(done.12) decode t5 mb0 seq0 tok5:6',
        'r1/compute: wait(done.16) decode t6 mb1 seq1 tok6:7',
        'r1/compute: wait(done.4) decode t4 mb0 seq0 tok4:5',
        'r1/compute: wait(done.8) decode t5 mb1 seq1 tok5:6',
    },
    'tp-pp': {
        'r0/compute: wait(done.32) decode t5 mb0 seq0 tok5:6',
        'r0/compute: wait(done.45) decode t6 mb1 seq1 tok6:7',
        'r2/compute: wait(done.14) decode t4 mb0 seq0 tok4:5',
        'r2/compute: wait(done.28) decode t5 mb1 seq1 tok5:6',
        'r2/compute: wait(done.42) decode t5 mb0 seq0 tok5:6',
        'r2/compute: wait(done.56) decode t6 mb1 seq1 tok6:7',
        'r3/compute: wait(done.12) decode t4 mb0 seq0 tok4:5',
        'r3/compute: wait(done.24) decode t5 mb1 seq1 tok5:6',
        'r3/compute: wait(done.36) decode t5 mb0 seq0 tok5:6',
        'r3/compute: wait(done.48) decode t6 mb1 seq1 tok6:7',
    },
    'tp-pp-dp': {
        'r0/compute: wait(done.20) decode t5 mb0 seq0 tok5:6',
        'r0/compute: wait(done.29) decode t6 mb1 seq1 tok6:7',
        'r0/compute: wait(done.30) decode t6 mb1 seq1 tok6:7',
        'r1/compute: wait(done.26) decode t6 mb1 seq1 tok6:7',
        'r2/compute: wait(done.12) decode t4 mb0 seq0 tok4:5',
        'r2/compute: wait(done.24) decode t5 mb1 seq1 tok5:6',
        'r2/compute: wait(done.36) decode t5 mb0 seq0 tok5:6',
        'r2/compute: wait(done.47) decode t6 mb1 seq1 tok6:7',
        'r2/compute: wait(done.48) decode t6 mb1 seq1 tok6:7',
        'r2/recv: wait(act_read.38) decode t6 mb1 seq1 tok6:7',
        'r2/tok1: wait(tok_out.46) decode t5 mb1 seq1 tok5:6',
        'r3/compute: wait(done.16) decode t5 mb1 seq1 tok5:6',
        'r3/compute: wait(done.24) decode t5 mb0 seq0 tok5:6',
        'r3/compute: wait(done.32) decode t6 mb1 seq1 tok6:7',
        'r3/compute: wait(done.8) decode t4 mb0 seq0 tok4:5',
        'r4/compute: wait(done.20) decode t5 mb0 seq2 tok5:6',
        'r4/compute: wait(done.29) decode t6 mb1 seq3 tok6:7',
        'r4/compute: wait(done.30) decode t6 mb1 seq3 tok6:7',
        'r5/compute: wait(done.26) decode t6 mb1 seq3 tok6:7',
        'r6/compute: wait(done.12) decode t4 mb0 seq2 tok4:5',
        'r6/compute: wait(done.24) decode t5 mb1 seq3 tok5:6',
        'r6/compute: wait(done.36) decode t5 mb0 seq2 tok5:6',
        'r6/compute: wait(done.47) decode t6 mb1 seq3 tok6:7',
        'r6/compute: wait(done.48) decode t6 mb1 seq3 tok6:7',
        'r6/recv: wait(act_read.38) decode t6 mb1 seq3 tok6:7',
        'r6/tok1: wait(tok_out.46) decode t5 mb1 seq3 tok5:6',
        'r7/compute: wait(done.16) decode t5 mb1 seq3 tok5:6',
        'r7/compute: wait(done.24) decode t5 mb0 seq2 tok5:6',
        'r7/compute: wait(done.32) decode t6 mb1 seq3 tok6:7',
        'r7/compute: wait(done.8) decode t4 mb0 seq2 tok4:5',
    },
    'sp': {
        'r0/compute: wait(kv_all.2) prefill seq0 tok0:4',
        'r0/compute: wait(kv_all.4) prefill seq0 tok0:4',
    },
    'tp-sp': {
        'r1/compute: wait(ln_all.18) prefill seq0 tok2:4',
    },
    'overlap-switch': {
        'r0/compute: wait(combined.11)',
        'r1/compute: wait(combined.11)',
        'r2/compute: wait(combined.11)',
        'r3/compute: wait(combined.11)',
    },
    'spec-decode': {
        'r1/comm: wait(sampled.5)',
        'r1/compute: wait(verify_reduced.4)',
    },
}
# more than a few seconds each (a re-check per sync): in the slow run
SLOW = {
    'dpattn-ep-states',
    'ep',
    'grammar-abort',
    'kv',
    'overlap-switch',
    'tp-pp',
    'tp-pp-dp',
}


def _params() -> list[object]:
    return [pytest.param(m.name, marks=pytest.mark.slow) if m.name in SLOW else m.name for m in list_models()]


@pytest.mark.parametrize("model", _params())
def test_every_redundant_sync_of_a_default_is_known(model: str) -> None:
    rr = find_redundant(build(model, {}, None))
    got = {v.sync.label for v in rr.redundant}
    known = KNOWN.get(model, set())
    assert got == known, ("unreported:", sorted(got - known), "no longer redundant:", sorted(known - got))
    assert all(v.confirmed for v in rr.redundant)


def test_the_known_list_is_in_the_docs() -> None:
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    text = docs.read_text(encoding="utf-8")
    assert "Known redundant syncs" in text
    section = text.split("## Known redundant syncs", 1)[1].split("\n## ", 1)[0]
    for model, labels in KNOWN.items():
        # the section's table row of the model names how many of its syncs are redundant
        row = next((line for line in section.splitlines() if line.startswith(f"| `{model}` |")), None)
        assert row is not None, f"docs/models.md has no row for {model}"
        assert row.split("|")[2].strip().startswith(f"{len(labels)} of "), row


# the examples every property of which is proved: their redundant syncs (docs/models.md, sp's row)
KNOWN_EXAMPLES: dict[str, set[str]] = {
    "sp-prefill-gathered.json": {"r0/compute: wait(kv_gathered) prefill sp0/2"},
}


def test_every_redundant_sync_of_a_proved_example_is_known() -> None:
    from pathlib import Path

    from syncproof.ir import load
    from syncproof.result import PROPERTIES

    root = Path(__file__).resolve().parents[1] / "examples"
    seen = 0
    for f in sorted([*root.glob("*.json"), *root.glob("choices/*.json")]):
        rr = find_redundant(load(f))
        if len(rr.proved) != len(PROPERTIES):
            continue  # a broken example: its redundancy is judged against what it proves only
        seen += 1
        got = {v.sync.label for v in rr.redundant}
        assert got == KNOWN_EXAMPLES.get(f.name, set()), (f.name, sorted(got))
    assert seen >= 5
