"""thermotrain: what a thermodynamic (analog, noise-driven) computer's circuits do to training.

Data flows one way: ``circuits`` (specs, symbolic model) -> ``netlists`` (SPICE text, ngspice runner,
validation) -> ``models`` (calibrated surrogates, hardware profiles, thermodynamic linear algebra)
-> ``training`` (K-FAC, thermodynamic K-FAC, TNGD).
"""

from thermotrain._errors import (
    CalibrationError as CalibrationError,
)
from thermotrain._errors import (
    CheckpointError as CheckpointError,
)
from thermotrain._errors import (
    CircuitError as CircuitError,
)
from thermotrain._errors import (
    DivergedError as DivergedError,
)
from thermotrain._errors import (
    InputError as InputError,
)
from thermotrain._errors import (
    NetlistSecurityError as NetlistSecurityError,
)
from thermotrain._errors import (
    OutputError as OutputError,
)
from thermotrain._errors import (
    ProfileError as ProfileError,
)
from thermotrain._errors import (
    ResourceLimitError as ResourceLimitError,
)
from thermotrain._errors import (
    SpiceConvergenceError as SpiceConvergenceError,
)
from thermotrain._errors import (
    SpiceError as SpiceError,
)
from thermotrain._errors import (
    SpiceNotFoundError as SpiceNotFoundError,
)
from thermotrain._errors import (
    SpiceTimeoutError as SpiceTimeoutError,
)
from thermotrain._errors import (
    ThermotrainError as ThermotrainError,
)
from thermotrain._errors import (
    TrainingError as TrainingError,
)
from thermotrain._errors import (
    UnloadableMatrixError as UnloadableMatrixError,
)

__version__ = "0.1.0"
