"""Callbacks that turn a training run into figures, on W&B and as PNG files."""
from .figures import FiguresCallback
from .interrupt import SaveOnInterrupt
from .publish import publish_image
from .summary import EpochSummary

__all__ = ["EpochSummary", "FiguresCallback", "SaveOnInterrupt", "publish_image"]
