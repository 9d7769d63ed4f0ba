"""Data-parallel training under torchrun (training/_distributed.py, docs/distributed.md).

One real ``torchrun --standalone --nproc-per-node 2`` launch (gloo, CPU, one thread per process) of
tests/_ddp_worker.py trains the digits MLP for 4 steps of a global batch of 64 (subset 256, one epoch,
K-FAC inverses every 2 steps) twice:

- digital K-FAC through the command line: equals the single-process run of the same global batch to float32
  rounding; rank 1 writes nothing (every file operation of each process is audited by a sitecustomize
  hook) and only rank 0 prints;
- thermodynamic K-FAC on the ideal device: equals a data-parallel run of one process (a world of 1). Its
  device noise is seeded per layer and step, not per rank; exact equality with ``python -m thermotrain
  train``, whose one generator is consumed layer after layer, is impossible without serialising the
  layers (asserted: that run differs).

The refusals (batch not divisible by the world size, an optimizer that does not run data-parallel, an
epoch's last batch smaller than the world, a malformed launch environment) are one line, from rank 0 only.

**Tolerance.** The distributed run computes the same numbers in another order: each rank sums its 32
examples, the all-reduce adds the two halves, the factors are averaged with weights 1/2. In float32
(unit roundoff u = 2⁻²⁴ ≈ 6·10⁻⁸) regrouping a sum of n terms changes it by at most ~n·u relative, ~√n·u
typically: ~5·10⁻⁷ for n = 64. The K-FAC update (G+λI)⁻¹ g (A+λI)⁻¹ with λ = 0.3 amplifies a relative
perturbation of g, A, G by at most the condition numbers of the damped factors (here ≤ (‖A‖+λ)/λ ≈ 10² for
the 65×65 input factor), and 4 steps add four such errors: ≲ 4·10²·5·10⁻⁷ ≈ 2·10⁻⁴ relative to an update of
size lr·‖U‖ ≈ 0.05·2, i.e. ≲ 2·10⁻⁵ absolute on a parameter. We assert |Δθ| ≤ 1e-5 + 1e-4·|θ| and losses
to rtol 1e-5 (the observed gap is ~10⁻⁷). A run whose ranks trained on their halves only (no all-reduce,
equivalent to batch 32) is ~10⁻² away: asserted to be over 100× the tolerance, so the test can fail.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import thermotrain.training._harness as harness
from thermotrain.cli import main as cli_main
from thermotrain.training import TrainConfig
from thermotrain.training._distributed import SettingsError, check_settings, launch_from_env
from thermotrain.training._harness import train
from thermotrain.training._nets import build_model as harness_build_model

ROOT = Path(__file__).resolve().parents[1]
RUN = [
    "--model", "mlp", "--dataset", "digits", "--subset", "256", "--epochs", "1", "--batch-size", "64",
    "--optimizer", "kfac", "--inv-update-steps", "2", "--threads", "1", "--no-progress",
]  # fmt: skip
SETTINGS = dict(
    model="mlp", dataset="digits", subset=256, epochs=1, batch_size=64, optimizer="kfac", inv_update_steps=2
)
ATOL, RTOL = 1e-5, 1e-4  # parameters (module docstring)
LOSS_RTOL = 1e-5

# Audits every file write/create/rename/remove of a torchrun worker (RANK set) under AUDIT_DIR and writes
# the list to AUDIT_LOG/rank<R>.json at exit (a sitecustomize on PYTHONPATH: no hook in thermotrain itself).
AUDIT = """
import atexit, json, os, sys
_rank, _dir, _log = os.environ.get("RANK"), os.environ.get("AUDIT_DIR"), os.environ.get("AUDIT_LOG")
if _rank is not None and _dir and _log:
    _seen = []
    _W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    _EV = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate", "os.symlink",
           "os.link", "shutil.copyfile", "shutil.move", "os.chmod", "os.utime"}
    def _under(p):
        try:
            return os.path.abspath(os.fsdecode(p)).startswith(_dir)
        except TypeError:
            return False
    def _hook(event, args):
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            w = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _W)
            if w and _under(path):
                _seen.append(["open", os.fsdecode(path)])
        elif event in _EV and args and any(_under(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
            _seen.append([event, str(args[0])])
    sys.addaudithook(_hook)
    def _dump():
        with open(os.path.join(_log, "rank%s.json" % _rank), "w") as f:
            json.dump(_seen, f)
    atexit.register(_dump)
"""


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``torchrun --standalone --nproc-per-node 2`` launch of tests/_ddp_worker.py (the digital run through
    the command line into work/dist, then the thermodynamic run without outputs): the finished process, the
    folders, and {rank: [file operations the rank made under work/]} from the audit hook."""
    tmp = tmp_path_factory.mktemp("ddp")
    work, audit, log, results = (tmp / d for d in ("work", "audit", "log", "results"))
    for d in (work, audit, log, results):
        d.mkdir()
    (audit / "sitecustomize.py").write_text(AUDIT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(audit), "AUDIT_DIR": str(work)}
    env["AUDIT_LOG"] = str(log)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    worker = [str(ROOT / "tests" / "_ddp_worker.py"), str(results), json.dumps(SETTINGS), *RUN]
    proc = subprocess.run([*cmd, *worker], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ops = {int(p.stem[4:]): json.loads(p.read_text()) for p in log.glob("rank*.json")}
    return {"proc": proc, "out": work / "dist", "results": results, "ops": ops}


def _single(monkeypatch: pytest.MonkeyPatch, **kw) -> tuple[dict, dict[str, torch.Tensor]]:
    """The run of SETTINGS (with ``kw``) in this process, one thread, no output folder: (summary, final
    parameters), the model caught where the harness builds it."""
    models: list[torch.nn.Module] = []

    def build(*args, **kwargs):
        models.append(harness_build_model(*args, **kwargs))
        return models[-1]

    monkeypatch.setattr(harness, "build_model", build)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = train(TrainConfig(**{**SETTINGS, **kw, "progress": False}))
    finally:
        torch.set_num_threads(threads)
    return summary, {k: v.detach().clone() for k, v in models[-1].state_dict().items()}


def test_two_processes_equal_one_process_of_the_global_batch(launch: dict, monkeypatch) -> None:
    ref, want = _single(monkeypatch, backend="exact")
    got = torch.load(launch["out"] / "checkpoint.pt", weights_only=True)["model"]
    assert got.keys() == want.keys()
    for k in got:
        torch.testing.assert_close(got[k], want[k], atol=ATOL, rtol=RTOL, msg=k)
    summary = json.loads((launch["out"] / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == ref["steps"] == 4
    for key in ("train_loss", "test_loss"):
        assert summary[key] == pytest.approx(ref[key], rel=LOSS_RTOL), key
    # the tolerance is meaningful: ranks training on their halves alone (batch 32) land far away
    _, alone = _single(monkeypatch, backend="exact", batch_size=32)
    gap = max(float((alone[k] - got[k]).abs().max()) for k in got)
    assert gap > 100 * (ATOL + RTOL), gap


def test_only_rank_0_writes_and_prints(launch: dict) -> None:
    out = launch["out"]
    names = {p.name for p in out.iterdir()}
    assert {"metrics.jsonl", "summary.json", "checkpoint.pt", "config.toml", "report.html"} <= names
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["kind"] == "step"] == [1, 2, 3, 4]  # one writer: no duplicates
    printed = [line for line in launch["proc"].stdout.splitlines() if line.startswith('{"status"')]
    assert len(printed) == 1 and json.loads(printed[0])["status"] == "completed"
    # rank 1 created, wrote, renamed or removed nothing; rank 0's audit shows that the hook sees writes
    ops = launch["ops"]
    assert set(ops) == {0, 1}
    assert any(path.endswith("metrics.jsonl") for _, path in ops[0])
    assert ops[1] == []


def test_thermodynamic_kfac_does_not_depend_on_the_number_of_processes(
    launch: dict, tmp_path, monkeypatch
) -> None:
    import torch.distributed as dist

    two = [json.loads((launch["results"] / f"ideal-rank{r}.json").read_text()) for r in (0, 1)]
    assert two[0] == two[1] and two[0]["world_size"] == 2
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        one, _ = _single(monkeypatch, backend="ideal")
    finally:
        dist.destroy_process_group()
    assert one["world_size"] == 1 and one["steps"] == two[0]["steps"] == 4
    for key in ("train_loss", "test_loss"):
        assert two[0][key] == pytest.approx(one[key], rel=LOSS_RTOL), key
    # every device call ran once, on its owner, and is counted once
    assert two[0]["analog_time_tau"] == pytest.approx(one["analog_time_tau"], rel=1e-5)
    assert two[0]["values_loaded"] == one["values_loaded"] > 0
    # and the noise is real: the plain single-process run (one generator in sequence) differs
    plain, _ = _single(monkeypatch, backend="ideal")
    assert abs(plain["test_loss"] - one["test_loss"]) > 100 * LOSS_RTOL * one["test_loss"]


def _cli(monkeypatch, capsys, rank: int, args: list[str]) -> tuple[int, str]:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    level = logging.getLogger().level  # rank ≠ 0 quietens the root logger: restore it for the other tests
    try:
        code = cli_main(["train", *args])
    except SystemExit as exc:
        code = int(exc.code)
    finally:
        logging.getLogger().setLevel(level)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--batch-size", "63"], ["--batch-size 63", "2 processes", "multiple of 2"]),
        (["--optimizer", "tngd"], ["--optimizer tngd", "data-parallel", "sgd, adam, kfac"]),
        (["--delay", "5"], ["--optimizer kfac does not read --delay 5"]),
    ],
)
def test_bad_settings_are_one_line_from_rank_0_only(tmp_path, monkeypatch, capsys, flags, words) -> None:
    args = [*RUN, *flags, "--out", str(tmp_path / "out")]
    code, err = _cli(monkeypatch, capsys, 0, args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("thermotrain train: error: "), err
    assert all(w in lines[0] for w in words), lines[0]
    code, err = _cli(monkeypatch, capsys, 1, args)
    assert code == 1 and err == ""
    assert not (tmp_path / "out").exists()


def test_last_batch_smaller_than_the_world_and_bad_launch_are_refused(monkeypatch) -> None:
    check_settings("kfac", 64, 4, 256 + 64 * 3)  # even epochs and ragged ≥ world size are fine
    check_settings("adam", 64, 4, 260)
    with pytest.raises(SettingsError, match=r"holds 2 of the 258 .* at least 4"):
        check_settings("sgd", 64, 4, 258)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(Exception, match="WORLD_SIZE='two' is not an integer"):
        launch_from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(Exception, match="RANK=2 with WORLD_SIZE=2"):
        launch_from_env()
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert launch_from_env() is None
