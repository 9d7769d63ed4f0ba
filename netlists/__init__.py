"""thermotrain.netlists: circuits as ngspice netlists, the ngspice runner, and the untrusted-input check.

- ``write_netlist(circuit, noise="file"|"trnoise"|"off", seed, duration, start) -> Netlist``
- ``run_transient(netlist, step=, stop=, ...) -> Transient``, ``run_operating_point(netlist) -> [P]``,
  ``run_many(jobs, executor) -> list[Transient | RunFailure]``, ``ngspice_version()``
- ``load_netlist(path, trusted=False) -> Netlist`` (checked against the allowlist, data files from its
  folder), ``parse_netlist(text, ...) -> CheckedNetlist``, ``check_untrusted(text, trusted=False) -> str``
  (the canonical text); see docs/security.md
- ``noisy_runs(circuit, settings: SpiceRunSettings, burn_in=, duration=) -> NoisyRuns`` (seeded noisy runs
  in parallel), ``save_traces(path, runs)`` / ``load_traces(path) -> NoisyRuns`` (the ``traces.npz`` archive
  that ``validate --save-traces`` writes and ``calibrate --from`` reads, strictly checked)
- ``SpiceRunSettings`` (what ``ValidationSettings`` and ``thermotrain.models.CalibrationSettings`` share)
"""

from thermotrain._runs import SpiceRunSettings as SpiceRunSettings
from thermotrain.netlists._ngspice import (
    SpiceJob as SpiceJob,
)
from thermotrain.netlists._ngspice import (
    Transient as Transient,
)
from thermotrain.netlists._ngspice import (
    ngspice_version as ngspice_version,
)
from thermotrain.netlists._ngspice import (
    read_rawfile as read_rawfile,
)
from thermotrain.netlists._ngspice import (
    run_operating_point as run_operating_point,
)
from thermotrain.netlists._ngspice import (
    run_transient as run_transient,
)
from thermotrain.netlists._profile_check import compare_profile as compare_profile
from thermotrain.netlists._profile_check import drawn_deviations as drawn_deviations
from thermotrain.netlists._safety import (
    check_untrusted as check_untrusted,
)
from thermotrain.netlists._safety import (
    load_netlist as load_netlist,
)
from thermotrain.netlists._safety import (
    parse_netlist as parse_netlist,
)
from thermotrain.netlists._sweep import (
    RunFailure as RunFailure,
)
from thermotrain.netlists._sweep import (
    run_job as run_job,
)
from thermotrain.netlists._sweep import (
    run_many as run_many,
)
from thermotrain.netlists._traces import TRACES_FILE as TRACES_FILE
from thermotrain.netlists._traces import NoisyRuns as NoisyRuns
from thermotrain.netlists._traces import load_traces as load_traces
from thermotrain.netlists._traces import save_traces as save_traces
from thermotrain.netlists._validation import ValidationSettings as ValidationSettings
from thermotrain.netlists._validation import noisy_runs as noisy_runs
from thermotrain.netlists._writer import (
    Netlist as Netlist,
)
from thermotrain.netlists._writer import (
    draw_noise as draw_noise,
)
from thermotrain.netlists._writer import (
    format_number as format_number,
)
from thermotrain.netlists._writer import (
    noise_record_rows as noise_record_rows,
)
from thermotrain.netlists._writer import (
    write_netlist as write_netlist,
)
