"""Callbacks that turn a training run into figures, on W&B and as PNG files."""
from .figures import FiguresCallback
from .publish import publish_image
from .summary import EpochSummary

__all__ = ["EpochSummary", "FiguresCallback", "publish_image"]
