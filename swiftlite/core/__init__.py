"""The engine every tuner shares: configs and registry, targeting, tuner layers, SwiftModel, I/O."""
from .config import SwiftConfig, TUNERS, get_tuner, register_tuner
from .layer import TunerLayer, tuner_layers
from .model import Swift, SwiftModel
from .tuner import Tuner

__all__ = ["Swift", "SwiftModel", "SwiftConfig", "Tuner", "TunerLayer", "TUNERS", "get_tuner", "register_tuner", "tuner_layers"]
