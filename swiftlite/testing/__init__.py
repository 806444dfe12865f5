"""Public testing helpers: the conformance kit (one function per check) and tiny model factories."""
from . import models
from .kit import CHECKS, Case, Report, check_tuner, output_tensor, perturb, run

__all__ = ["CHECKS", "Case", "Report", "check_tuner", "models", "output_tensor", "perturb", "run"]
