"""The exception tree. Every error names the offending value and the fix."""


class ThermotrainError(Exception):
    """Base class of every error thermotrain raises on purpose. ``exit_code`` is the command line's exit
    status for it (1 unless a subclass says otherwise)."""

    exit_code = 1


class CircuitError(ThermotrainError, ValueError):
    """A circuit spec or target matrix cannot be realised (non-SPD, non-finite, component out of range)."""


class UnloadableMatrixError(CircuitError):
    """The hardware cannot hold a matrix (e.g. quantization made it indefinite). ``extra_damping`` is the
    smallest diagonal shift, in the units of the matrix passed in, that would make the loaded matrix PD."""

    def __init__(self, message: str, extra_damping: float) -> None:
        super().__init__(message)
        self.extra_damping = float(extra_damping)


class SpiceError(ThermotrainError, RuntimeError):
    """ngspice failed; the message carries ngspice's own words."""


class SpiceNotFoundError(SpiceError):
    """Neither the ngspice shared library nor the batch binary could be found."""


class SpiceConvergenceError(SpiceError):
    """ngspice did not converge (timestep too small, singular matrix, ...)."""


class SpiceTimeoutError(SpiceError):
    """An ngspice run exceeded its wall-clock limit."""


class NetlistSecurityError(ThermotrainError, ValueError):
    """Netlist text from outside holds control/shell/include directives and was not marked trusted."""


class CalibrationError(ThermotrainError, RuntimeError):
    """A surrogate could not be fitted to SPICE data."""


class ProfileError(ThermotrainError, ValueError):
    """A hardware profile is missing a field, has the wrong schema version, is corrupt or non-finite."""


class TrainingError(ThermotrainError, RuntimeError):
    """Training hit a non-finite loss/gradient or an invalid optimizer setting."""


class InputError(ThermotrainError, ValueError):
    """A value from outside (an argument, a file, an environment setting) is out of range, of the wrong
    kind, unreadable or corrupt. The message names the value and the fix."""


class ResourceLimitError(InputError):
    """A request would need more memory, disk, time or file size than the stated limit; the message gives
    the estimate, the limit, and the flag or setting that raises it."""


class OutputError(ThermotrainError, OSError):
    """An output folder cannot be used: it is a file, not writable, or holds an earlier run that would be
    mixed with the new one (pass ``--overwrite`` / ``--resume``)."""


class CheckpointError(TrainingError):
    """A checkpoint is corrupt, foreign (not written by thermotrain), or does not match the run."""


class DivergedError(TrainingError):
    """Training diverged (non-finite or exploding loss). The CLI exits with status 4 and the run's summary
    says ``"status": "diverged"``."""

    exit_code = 4
