"""syncproof.fanout and the ``--jobs`` / ``--ray`` options of ``sweep`` and
``prove``: the same rows in the same order whichever executor runs them
(in this process, local processes, Ray with a stand-in ``ray`` module, and a
real local Ray cluster in a slow test when ray is installed); one
configuration's failure is that row's error; bad options exit 2."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncproof.cli import main
from syncproof.errors import UsageError
from syncproof.fanout import Failed, Processes, RayCluster, Serial, check_ray_address, chunk_size, open_fanout

SWEEP = ["sweep", "--model", "tp", "--set", "tp=1..3", "--set", "layers=1,2", "--set", "phase=prefill,both",
         "--fault", "no-wait-allreduce", "--format", "json"]
PROOFS = """
[[proof]]
name = "tp2"
model = "tp"
params = { tp = 2, layers = 1 }
expect = "proved"

[[proof]]
name = "tp2-skip"
model = "tp"
params = { tp = 2, layers = 1 }
fault = "skip-allreduce"
expect = "violated: matching"

[[proof]]
name = "dp2-wrong-expectation"
model = "dp"
params = { dp = 2, layers = 1 }
fault = "skip-gather"
expect = "proved"

[[proof]]
name = "sp-causal"
parametric = "sp-causal"
params = { variant = "ring" }
expect = "proved"
"""


def _json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows without their times (the one thing that may differ)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in doc["rows"]]


def _outcomes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in o.items() if k != "seconds"} for o in doc["outcomes"]]


# ------------------------------------------------------------------ a stand-in for ray
class FakeRay(types.ModuleType):
    """``ray`` as far as syncproof uses it: ``init``, ``remote``, ``get``,
    ``cluster_resources``, ``shutdown``; tasks run here, lazily, at ``get``,
    and their arguments go through pickle as they would to a worker."""

    def __init__(self, fail: Exception | None = None, cpus: int = 3) -> None:
        super().__init__("ray")
        self.fail = fail
        self.cpus = cpus
        self.inits: list[dict[str, Any]] = []
        self.tasks = 0
        self.shut = False

    def init(self, address: str | None = None, **kw: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.inits.append({"address": address, **kw})

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": float(self.cpus)}

    def remote(self, fn: Callable[..., Any]) -> Any:
        import pickle

        ray = self

        class Remote:
            def remote(self, *args: Any) -> Callable[[], Any]:
                ray.tasks += 1
                shipped = pickle.dumps(args)
                return lambda: fn(*pickle.loads(shipped))

        return Remote()

    def get(self, ref: Callable[[], Any]) -> Any:
        return ref()

    def shutdown(self) -> None:
        self.shut = True


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    return ray


# ------------------------------------------------------------------ the executors directly
def _square(x: int) -> int:
    if x == 5:
        raise RuntimeError("five is not allowed")
    if x == 6:
        raise UsageError("six is bad input")
    return x * x


def _die_on_five(x: int) -> int:
    if x == 5:
        os._exit(1)  # a worker lost (killed, out of memory)
    return x


def test_every_executor_gives_the_same_results_in_order(fake_ray: FakeRay) -> None:
    items = list(range(40))
    want = [Failed("internal", "RuntimeError: five is not allowed") if x == 5 else
            Failed("user", "six is bad input") if x == 6 else x * x for x in items]
    assert list(Serial().imap(_square, items)) == want
    with Processes(2) as pool:
        assert list(pool.imap(_square, items)) == want
        assert list(pool.imap(_square, items[:3])) == want[:3]  # the pool is reused
    with RayCluster("auto") as cluster:
        assert list(cluster.imap(_square, items)) == want
    assert fake_ray.inits[0]["address"] == "auto" and fake_ray.shut
    assert fake_ray.tasks == len(range(0, 40, chunk_size(40, 3)))  # one task per chunk, not per item


def test_a_dead_worker_loses_its_items_not_the_run() -> None:
    items = list(range(12))
    with Processes(2) as pool:
        got = list(pool.imap(_die_on_five, items))
    assert len(got) == len(items)
    first_lost = next(i for i, g in enumerate(got) if isinstance(g, Failed))
    assert first_lost <= 5 and got[:first_lost] == items[:first_lost]
    assert all(isinstance(g, Failed) and g.kind == "lost" and "died" in g.message for g in got[first_lost:])


def test_chunks_are_small_enough_to_spread() -> None:
    assert chunk_size(1, 8) == 1
    assert chunk_size(1000, 2) == 32
    assert chunk_size(100, 4) == 6
    assert chunk_size(10_000, 1000) == 2


@pytest.mark.parametrize("address", ["auto", "local", "10.0.0.1:6379", "ray://head-node.example:10001",
                                     "[::1]:6379", " auto "])
def test_ray_addresses(address: str) -> None:
    assert check_ray_address(address) == address.strip()


@pytest.mark.parametrize("address", ["", "%%%", "head", "head:", "head:0", "head:70000", "ray://", "http://h:1",
                                     "a b:1", "h:1:2", "ray://h:1/x", "\x00:1", "²:1"])
def test_garbage_ray_addresses_are_usage_errors(address: str) -> None:
    with pytest.raises(UsageError, match="not a Ray cluster address"):
        check_ray_address(address)


def test_bad_fanout_options() -> None:
    for jobs in (-1, 1025, True):
        with pytest.raises(UsageError, match="--jobs"):
            open_fanout(jobs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="do not go together"):
        open_fanout(2, "auto")
    assert isinstance(open_fanout(1), Serial)
    assert isinstance(open_fanout(0), Processes if (os.cpu_count() or 1) > 1 else Serial)


def test_ray_missing_or_unreachable_is_exit_2(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["sweep", "--model", "tp", "--set", "tp=1", "--ray", "auto"]) == 2
    assert "ray package is not installed" in capsys.readouterr().err
    fake = FakeRay(fail=ConnectionError("Could not find any running Ray instance"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert main(["prove", "proofs/tp.toml", "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the Ray cluster" in err and "running Ray instance" in err and "Traceback" not in err
    with socket.socket() as s:  # a port on this machine where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://localhost:{port}"):
        assert main(["sweep", "--model", "tp", "--set", "tp=1", "--ray", address]) == 2
        err = capsys.readouterr().err
        assert "cannot reach the Ray cluster: nothing answers at" in err and f":{port}" in err, err
    assert fake.inits == []  # refused before ray.init, which would retry for minutes


# ------------------------------------------------------------------ through the commands
def test_sweep_rows_are_the_same_serial_processes_and_ray(fake_ray: FakeRay,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, serial = _json(SWEEP, capsys)
    assert code == 1
    statuses = [r["status"] for r in serial["rows"]]
    assert statuses.count("skipped") == 4 and statuses.count("checked") == 8  # tp=1 rows: the fault needs tp>=2
    for extra in (["--jobs", "2"], ["--ray", "local"]):
        code2, other = _json([*SWEEP, *extra], capsys)
        assert code2 == code
        assert _rows(other) == _rows(serial), extra
    assert fake_ray.inits and fake_ray.inits[0]["address"] == "local"


def test_sweep_text_output_is_the_same_with_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sweep", "--model", "dp", "--set", "dp=1..3", "--set", "layers=1,2", "--fault", "skip-gather"]
    assert main(argv) == 1
    serial = capsys.readouterr().out
    assert main([*argv, "-j", "2"]) == 1
    parallel = capsys.readouterr().out

    def strip(text: str) -> list[str]:  # the time column differs
        return [re.sub(r"\s+\d+\.\d+s$", "", line) for line in text.splitlines()]

    assert strip(parallel) == strip(serial)
    assert "skipped dp=1 layers=1" in serial


def test_one_configuration_crashing_is_its_row(monkeypatch: pytest.MonkeyPatch, fake_ray: FakeRay,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from syncproof.models import registry

    real = registry.build

    def build(name: str, params: dict[str, Any], fault: str | None = None) -> Any:
        if params.get("tp") == "2":
            raise KeyError("a bug in a model builder")
        return real(name, params, fault)

    monkeypatch.setattr(registry, "build", build)
    argv = ["sweep", "--model", "tp", "--set", "tp=1..3", "--set", "layers=1", "--format", "json"]
    for extra in ([], ["--ray", "auto"]):  # the stand-in ray runs in this process, so it sees the patch too
        code, doc = _json([*argv, *extra], capsys)
        assert code == 4, extra
        rows = doc["rows"]
        assert [r["status"] for r in rows] == ["checked", "error", "checked"]
        assert rows[1]["exit"] == 4 and "KeyError" in rows[1]["error"] and "a bug" in rows[1]["error"]
        assert rows[0]["exit"] == 0 and rows[2]["exit"] == 0
    assert main(argv[:-2]) == 4
    out = capsys.readouterr().out
    assert "error tp=2 layers=1: internal error" in out and "1 errors" in out


def test_prove_outcomes_are_the_same_serial_processes_and_ray(tmp_path: Path, fake_ray: FakeRay,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "small.toml"
    p.write_text(PROOFS)
    code, serial = _json(["prove", str(p), "--format", "json"], capsys)
    assert code == 1  # the dp obligation's expectation is wrong: a regression
    assert [o["status"] for o in serial["outcomes"]] == ["ok", "ok", "regression", "ok"]
    for extra in (["-j", "2"], ["--ray", "auto"]):
        code2, other = _json(["prove", str(p), "--format", "json", *extra], capsys)
        assert code2 == code and _outcomes(other) == _outcomes(serial), extra


def test_prove_crash_in_one_obligation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from syncproof.commands import prove

    real = prove.run

    def run(ob: Any) -> Any:
        if ob.name == "tp2-skip":
            raise ZeroDivisionError("boom")
        return real(ob)

    monkeypatch.setattr(prove, "run", run)
    p = tmp_path / "small.toml"
    p.write_text(PROOFS)
    code, doc = _json(["prove", str(p), "--format", "json", "-k", "*::tp2*"], capsys)
    assert code == 4 and doc["exit"] == 4
    assert [o["status"] for o in doc["outcomes"]] == ["ok", "error"]
    assert "ZeroDivisionError: boom" in doc["outcomes"][1]["detail"]


@pytest.mark.parametrize("argv, message", [
    (["prove", "-k", "no-such-obligation"], "matches -k"),
    (["prove", "-j", "-3"], "--jobs"),
    (["prove", "--ray", "::::"], "not a Ray cluster address"),
    (["prove", "--list", "--ray", "x y"], "not a Ray cluster address"),
    (["sweep", "--model", "tp", "--jobs", "-1"], "--jobs"),
    (["sweep", "--model", "tp", "--ray", "auto", "--jobs", "3"], "do not go together"),
])
def test_bad_fanout_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------ a real Ray cluster
@pytest.mark.slow
def test_a_real_local_ray_cluster_gives_the_same_rows(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray")
    code, serial = _json(SWEEP, capsys)
    code2, on_ray = _json([*SWEEP, "--ray", "local"], capsys)
    assert code2 == code and _rows(on_ray) == _rows(serial)
