"""Public testing helpers: the conformance kit and tiny model factories."""
from . import models
from .kit import Report, check_tuner, output_tensor

__all__ = ["check_tuner", "Report", "output_tensor", "models"]
