"""thermotrain.circuits: array specs, the element-level circuit, the symbolic model and its theory."""

from thermotrain.circuits._arrays import (
    ArraySpec as ArraySpec,
)
from thermotrain.circuits._arrays import (
    RCArraySpec as RCArraySpec,
)
from thermotrain.circuits._arrays import (
    RLCArraySpec as RLCArraySpec,
)
from thermotrain.circuits._arrays import (
    amplifier_nodes as amplifier_nodes,
)
from thermotrain.circuits._arrays import (
    from_matrix as from_matrix,
)
from thermotrain.circuits._arrays import (
    noise_generator as noise_generator,
)
from thermotrain.circuits._arrays import (
    opamp_elements as opamp_elements,
)
from thermotrain.circuits._elements import (
    BOLTZMANN as BOLTZMANN,
)
from thermotrain.circuits._elements import (
    GROUND as GROUND,
)
from thermotrain.circuits._elements import (
    IDEAL_OPAMP_GAIN as IDEAL_OPAMP_GAIN,
)
from thermotrain.circuits._elements import (
    VCCS as VCCS,
)
from thermotrain.circuits._elements import (
    VCVS as VCVS,
)
from thermotrain.circuits._elements import (
    Capacitor as Capacitor,
)
from thermotrain.circuits._elements import (
    Circuit as Circuit,
)
from thermotrain.circuits._elements import (
    CurrentSource as CurrentSource,
)
from thermotrain.circuits._elements import (
    Element as Element,
)
from thermotrain.circuits._elements import (
    Inductor as Inductor,
)
from thermotrain.circuits._elements import (
    NoiseCurrent as NoiseCurrent,
)
from thermotrain.circuits._elements import (
    Resistor as Resistor,
)
from thermotrain.circuits._elements import (
    VoltageSource as VoltageSource,
)
from thermotrain.circuits._mna import (
    CircuitSDE as CircuitSDE,
)
from thermotrain.circuits._mna import (
    DescriptorSystem as DescriptorSystem,
)
from thermotrain.circuits._mna import (
    SymbolicModel as SymbolicModel,
)
from thermotrain.circuits._mna import (
    descriptor_system as descriptor_system,
)
from thermotrain.circuits._mna import (
    linear_sde as linear_sde,
)
from thermotrain.circuits._mna import (
    symbolic_model as symbolic_model,
)
from thermotrain.circuits._nonideal import (
    CORNER_KEYS as CORNER_KEYS,
)
from thermotrain.circuits._nonideal import (
    HARDWARE_CORNERS as HARDWARE_CORNERS,
)
from thermotrain.circuits._nonideal import (
    NonIdealities as NonIdealities,
)
from thermotrain.circuits._nonideal import (
    OpAmp as OpAmp,
)
from thermotrain.circuits._nonideal import (
    corner_as_dict as corner_as_dict,
)
from thermotrain.circuits._nonideal import (
    corner_from_dict as corner_from_dict,
)
from thermotrain.circuits._nonideal import (
    load_corner as load_corner,
)
from thermotrain.circuits._nonideal import (
    resolve_corner as resolve_corner,
)
from thermotrain.circuits._presets import PRESETS as PRESETS
from thermotrain.circuits._presets import preset as preset
from thermotrain.circuits._region import LinearRegion as LinearRegion
from thermotrain.circuits._region import clipped_fraction as clipped_fraction
from thermotrain.circuits._region import flicker_error_bound as flicker_error_bound
from thermotrain.circuits._region import linear_region as linear_region
from thermotrain.circuits._targets import MAX_CELLS as MAX_CELLS
from thermotrain.circuits._targets import Scaling as Scaling
from thermotrain.circuits._targets import check_spd as check_spd
from thermotrain.circuits._targets import quantize_entries as quantize_entries
from thermotrain.circuits._theory import ErrorBudget as ErrorBudget
from thermotrain.circuits._theory import Theory as Theory
from thermotrain.circuits._theory import bonferroni_z as bonferroni_z
