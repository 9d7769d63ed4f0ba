"""Fuzz: a few hundred seeded mutations of netlists and hardware profiles give only clean refusals (a
``ThermotrainError`` with a message) or clean runs (finite numbers) -- never another exception, a hang, or a
side effect outside the run's own folder.

Netlists are parsed in-process (the allowlist parser is pure Python); the ones it accepts run in real ngspice
in batch mode (a crashed ngspice is then a failed subprocess, not a crashed test), under a timeout. Profiles
are loaded in-process, and the ones that load are used as a device for a small inverse.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from thermotrain import ThermotrainError
from thermotrain.models import inverse, load_profile
from thermotrain.netlists import load_netlist, run_transient

pytestmark = pytest.mark.spice

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "profiles" / "rc8.json"
SENTINEL = "fuzz_sentinel"

BASE_NETLIST = """* fuzz base: two coupled RC cells driven by a source
V1 in 0 dc 1
R1 in n1 1k
C1 n1 0 1n
R2 n1 n2 2k
C2 n2 0 1n ic=0
R3 n2 0 10k
I1 0 n1 dc 0 trnoise(1e-9 1e-7 0 0)
.options reltol=1e-3
.end
"""

HOSTILE_LINES = [
    ".control",
    "shell touch {S}",
    ".endc",
    "*# shell touch {S}",
    "*ng_script",
    "* ng_script",
    "echo x > {S}",
    ".include /etc/passwd",
    ".inc ../../etc/passwd",
    ".lib /etc/passwd tt",
    ".exec shell touch {S}",
    "a1 %v([nz]) nsrc",
    '.model nsrc filesource (file="/etc/passwd" amploffset=[0] amplscale=[1])',
    '.model nsrc filesource (file="../secret.txt")',
    ".options noacct interactive",
    ".option seed=1",
    ".param x={{1/0}}",
    ".func f(x) {{x*x}}",
    ".measure tran m1 max v(n1)",
    ".save all",
    ".tran 1e-9 1",
    ".print tran v(n1)",
    "B1 n1 0 V=1/0",
    "R9 n1 0 -1k",
    "R9 n1 0 1e-300",
    "C9 n1 n2 1e300",
    "L9 n1 0 1u",
    "X1 n1 n2 nosuch",
    ".subckt s a b\nR1 a b 1k\n.ends",
    ".global n1",
    "+ .include /etc/passwd",
    "R1 n1 0 1k ; shell touch {S}",
    "R1 n1 0 1k $ .control",
    "\x00\x01\x02",
    "ŝŧŗåñğë ñøđë",
    "R" + "x" * 5000 + " n1 0 1k",
    ".end",
    "",
]


def _mutate_netlist(text: str, rng: random.Random, workdir: Path) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        i = rng.randrange(len(lines) + 1)
        if op == 0:
            lines.insert(i, rng.choice(HOSTILE_LINES).format(S=workdir / SENTINEL))
        elif op == 1 and lines:
            del lines[min(i, len(lines) - 1)]
        elif op == 2 and lines:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 3 and lines:
            j = rng.randrange(len(lines))
            line = lines[j]
            if line:
                k = rng.randrange(len(line))
                line = line[:k] + chr(rng.choice([*range(32, 127), 0x0B, 0xA0, 0x2028])) + line[k + 1 :]
            lines[j] = line
        elif op == 4:
            cut = rng.randrange(max(1, len("\n".join(lines))))
            lines = "\n".join(lines)[:cut].splitlines()
        elif lines:
            j, k = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[j], lines[k] = lines[k], lines[j]
    return "\n".join(lines) + "\n"


def test_mutated_netlists_are_refused_or_run_cleanly(tmp_path: Path, monkeypatch) -> None:
    rng = random.Random(20261203)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.txt").write_text("1 2\n3 4\n")
    accepted = refused = 0
    for case in range(300):
        work = tmp_path / f"case{case}"
        work.mkdir()
        path = work / "fuzz.cir"
        path.write_text(_mutate_netlist(BASE_NETLIST, rng, work), encoding="utf-8", errors="surrogateescape")
        try:
            netlist = load_netlist(path)
        except ThermotrainError as exc:
            assert str(exc), f"case {case}: empty message"
            refused += 1
        else:
            accepted += 1
            try:
                tr = run_transient(netlist, step=1e-7, stop=2e-6, probes=["n1"], engine="batch", timeout=20)
                assert np.all(np.isfinite(tr.values)), f"case {case}: non-finite values without an error"
            except ThermotrainError as exc:
                assert str(exc)
        leaked = [p for p in tmp_path.rglob(SENTINEL)]
        assert not leaked, f"case {case}: a hostile line ran: {path.read_text()!r}"
        shutil.rmtree(work)
    assert refused > 50 and accepted > 20, (refused, accepted)  # the fuzzer reaches both outcomes
    assert not list(Path(os.path.expanduser("~")).glob(SENTINEL))


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


BAD_VALUES = [None, "x", -1, 0, 1e308, -1e-300, [], {}, [[1, 2], [3]], True, 10**400, "NaN", 2.5, "rc"]


def _mutate_profile(text: str, rng: random.Random) -> str:
    if rng.random() < 0.3:  # byte level: truncate, flip, insert, nest
        data = bytearray(text.encode())
        op = rng.randrange(4)
        if op == 0:
            return data[: rng.randrange(len(data))].decode("latin-1")
        if op == 1:
            k = rng.randrange(len(data))
            data[k] = rng.randrange(256)
            return data.decode("latin-1")
        if op == 2:
            k = rng.randrange(len(data))
            return (data[:k] + bytes(rng.randrange(256) for _ in range(8)) + data[k:]).decode("latin-1")
        return "[" * rng.choice([40, 1000, 100000]) + "]" * rng.choice([0, 40])
    obj = json.loads(text)
    for _ in range(rng.randint(1, 2)):
        paths = list(_paths(obj))
        path = rng.choice(paths)
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif rng.random() < 0.1 and isinstance(parent, dict):
            parent["unexpected_key"] = 1
        else:
            parent[path[-1]] = rng.choice(BAD_VALUES)
    return json.dumps(obj).replace('"NaN"', rng.choice(['"NaN"', "NaN", "Infinity"]))


def test_mutated_profiles_are_refused_or_work(tmp_path: Path) -> None:
    rng = random.Random(1203)
    text = SHIPPED.read_text()
    A = torch.tensor([[2.0, -0.5, 0.1], [-0.5, 1.0, 0.2], [0.1, 0.2, 1.5]], dtype=torch.float64)
    loaded = refused = 0
    for case in range(300):
        path = tmp_path / f"p{case}.json"
        path.write_text(_mutate_profile(text, rng), encoding="latin-1")
        try:
            prof = load_profile(path)
        except ThermotrainError as exc:
            assert str(exc)
            refused += 1
            continue
        loaded += 1
        try:
            r = inverse(A, backend=prof, t=200.0, dt=max(2.0, prof.sample_interval_tau))
        except ThermotrainError:
            continue
        assert torch.isfinite(r.inverse).all(), f"case {case}: a profile that loads gave non-finite numbers"
    assert refused > 100 and loaded > 5, (refused, loaded)
