"""overdeq: over-parameterised deep equilibrium models, as in Ling et al. (AISTATS 2023)."""

from .config import RunConfig, TrainConfig, make_run_config
from .data import Dataset, DataSpec, load_dataset
from .implicit import SolveStats, WarmStart, adjoint, deq_output, equilibrium, released_output
from .kernels import deq_conjugate_kernel, deq_tangent_kernel, lambda_star, untied_conjugate_kernel
from .model import DEQ, DEQConfig
from .monitor import PowerNorm, gram_lambda_min, tangent_gram
from .solvers import SOLVERS, SolverConfig, SolverResult, get_solver, solve
from .theory import fit_rate
from .train import train

__all__ = [
    "DEQ",
    "DEQConfig",
    "DataSpec",
    "Dataset",
    "load_dataset",
    "SOLVERS",
    "SolverConfig",
    "SolverResult",
    "get_solver",
    "solve",
    "WarmStart",
    "SolveStats",
    "equilibrium",
    "adjoint",
    "deq_output",
    "released_output",
    "PowerNorm",
    "gram_lambda_min",
    "tangent_gram",
    "deq_conjugate_kernel",
    "untied_conjugate_kernel",
    "deq_tangent_kernel",
    "lambda_star",
    "RunConfig",
    "TrainConfig",
    "make_run_config",
    "train",
    "fit_rate",
]
__version__ = "0.1.0"
