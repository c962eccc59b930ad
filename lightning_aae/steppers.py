"""`optim.stepper` -> the stepper that runs each training step (the registry config validation reads)."""
from __future__ import annotations

from .compiled import CompiledStepper, CudaGraphStepper
from .schedule import EagerStepper

STEPPERS = {"eager": EagerStepper, "compiled": CompiledStepper, "cuda_graph": CudaGraphStepper}


def make_stepper(name: str, **kwargs):
    if name not in STEPPERS:
        raise ValueError(f"unknown stepper '{name}'; valid: {', '.join(STEPPERS)}")
    return STEPPERS[name](**kwargs)
