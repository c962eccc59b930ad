"""Callbacks that turn a training run into figures (W&B and PNG files), and keep it safe."""
from .figures import FIGURES, build_figure_callbacks
from .guards import DivergenceCheck, RNGState, WallClock
from .preemption import Preempted, Preemption
from .publish import publish_image, publish_wandb
from .summary import EpochSummary

__all__ = ["FIGURES", "DivergenceCheck", "RNGState", "EpochSummary", "Preempted", "Preemption", "build_figure_callbacks", "publish_image", "publish_wandb",
           "WallClock"]
