"""Callbacks that turn a training run into figures, on W&B and as PNG files."""
from .figures import FiguresCallback
from .publish import publish_image

__all__ = ["FiguresCallback", "publish_image"]
