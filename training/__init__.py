"""thermotrain.training: K-FAC, thermodynamic K-FAC, TNGD and the baselines, on digital or analog backends."""

from thermotrain.training._baselines import (
    NGDConfig as NGDConfig,
)
from thermotrain.training._baselines import (
    NGDPreconditioner as NGDPreconditioner,
)
from thermotrain.training._baselines import (
    conjugate_gradient as conjugate_gradient,
)
from thermotrain.training._compare import train_comparison as train_comparison
from thermotrain.training._cost_model import (
    HardwareConstants as HardwareConstants,
)
from thermotrain.training._cost_model import (
    device_seconds as device_seconds,
)
from thermotrain.training._cost_model import (
    kfac_layer_costs as kfac_layer_costs,
)
from thermotrain.training._cost_model import (
    tiled_factor_cost as tiled_factor_cost,
)
from thermotrain.training._data import Dataset as Dataset
from thermotrain.training._data import load_dataset as load_dataset
from thermotrain.training._demo import demo_train as demo_train
from thermotrain.training._experiments import run_experiment as run_experiment
from thermotrain.training._ggn import GGNOperator as GGNOperator
from thermotrain.training._harness import (
    OPTIMIZERS as OPTIMIZERS,
)
from thermotrain.training._harness import (
    TrainConfig as TrainConfig,
)
from thermotrain.training._harness import (
    evaluate as evaluate,
)
from thermotrain.training._harness import (
    train as train,
)
from thermotrain.training._kfac import (
    KFACConfig as KFACConfig,
)
from thermotrain.training._kfac import (
    KFACPreconditioner as KFACPreconditioner,
)
from thermotrain.training._kfac import (
    Schedule as Schedule,
)
from thermotrain.training._nets import ViT as ViT
from thermotrain.training._nets import build_model as build_model
from thermotrain.training._nets import cnn as cnn
from thermotrain.training._nets import mlp as mlp
from thermotrain.training._nets import vit as vit
from thermotrain.training._precond import Preconditioner as Preconditioner
from thermotrain.training._solvers import (
    AnalogSolver as AnalogSolver,
)
from thermotrain.training._solvers import (
    CurvatureSolver as CurvatureSolver,
)
from thermotrain.training._solvers import (
    ExactSolver as ExactSolver,
)
from thermotrain.training._solvers import (
    SolverStats as SolverStats,
)
from thermotrain.training._solvers import (
    make_solver as make_solver,
)
from thermotrain.training._tngd import (
    TNGDConfig as TNGDConfig,
)
from thermotrain.training._tngd import (
    TNGDPreconditioner as TNGDPreconditioner,
)
from thermotrain.training._tngd import (
    ou_transition as ou_transition,
)
