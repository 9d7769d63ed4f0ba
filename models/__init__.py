"""thermotrain.models: the exact stochastic surrogate of an analog array, its non-Gaussian stages, hardware
profiles, and thermodynamic linear algebra (``solve`` / ``inverse``) with backends ``"exact"``, ``"ideal"``
or a :class:`HardwareProfile`.
"""

from thermotrain.models._calibrate import Calibration as Calibration
from thermotrain.models._calibrate import CalibrationSettings as CalibrationSettings
from thermotrain.models._calibrate import calibrate as calibrate
from thermotrain.models._linalg import InverseResult as InverseResult
from thermotrain.models._linalg import SolveResult as SolveResult
from thermotrain.models._linalg import check_spd as check_spd
from thermotrain.models._linalg import inverse as inverse
from thermotrain.models._linalg import solve as solve
from thermotrain.models._linear_sde import LinearSDE as LinearSDE
from thermotrain.models._linear_sde import Transition as Transition
from thermotrain.models._linear_sde import log_likelihood as log_likelihood
from thermotrain.models._linear_sde import psd_factor as psd_factor
from thermotrain.models._linear_sde import sample_time_average as sample_time_average
from thermotrain.models._linear_sde import simulate as simulate
from thermotrain.models._linear_sde import state_moments as state_moments
from thermotrain.models._linear_sde import stationary_covariance as stationary_covariance
from thermotrain.models._linear_sde import time_average_moments as time_average_moments
from thermotrain.models._linear_sde import transition as transition
from thermotrain.models._profile import COMPONENT_STATS_DEFAULTS as COMPONENT_STATS_DEFAULTS
from thermotrain.models._profile import FITTED_DEFAULTS as FITTED_DEFAULTS
from thermotrain.models._profile import SCHEMA_VERSION as SCHEMA_VERSION
from thermotrain.models._profile import ChipSpec as ChipSpec
from thermotrain.models._profile import DeviceInstance as DeviceInstance
from thermotrain.models._profile import ElementDeviations as ElementDeviations
from thermotrain.models._profile import HardwareProfile as HardwareProfile
from thermotrain.models._profile import load_profile as load_profile
from thermotrain.models._profile import save_profile as save_profile
from thermotrain.models._quantize import Quantizer as Quantizer
from thermotrain.models._quantize import Readout as Readout
from thermotrain.models._quantize import merge_over_roundings as merge_over_roundings
from thermotrain.models._readout import DEFAULT_TARGET_ERROR as DEFAULT_TARGET_ERROR
from thermotrain.models._readout import ReadoutConfig as ReadoutConfig
from thermotrain.models._readout import ReadoutPlan as ReadoutPlan
from thermotrain.models._readout import extreme_eigenvalues as extreme_eigenvalues
from thermotrain.models._readout import plan_readout as plan_readout
from thermotrain.models._reduce import ReducedModel as ReducedModel
from thermotrain.models._reduce import balanced_truncation as balanced_truncation
from thermotrain.models._registry import SHIPPED_PROFILES as SHIPPED_PROFILES
from thermotrain.models._registry import find_profile as find_profile
from thermotrain.models._registry import shipped_profile_path as shipped_profile_path
from thermotrain.models._tiles import TileCache as TileCache
from thermotrain.models._tiles import TiledResult as TiledResult
from thermotrain.models._tiles import tile_blocks as tile_blocks
from thermotrain.models._tiles import tiled_inverse as tiled_inverse
from thermotrain.models._tiles import tiled_solve as tiled_solve
