"""`optim.stepper=compiled` and `optim.stepper=cuda_graph`: a variant's whole training step (every phase,
its gradients, clipping and optimizer update) as one function of tensors, compiled by `torch.compile`.

The function takes only tensors (parameters, buffers, optimizer states, learning rates, the batch) and
returns new ones; nothing in it reads the module's own state, so it is traced once, not per call. It runs
the same hooks as `EagerStepper` (schedule.py) through `torch.func.functional_call`, in the same order, so
the random draws (prior samples, input noise) come out of the same stream: with
`torch._inductor.config.fallback_random` the compiled step draws exactly what eager draws. The adversaries'
codes are computed once per step as in eager: the discriminator step sees them detached and the generator
step back-propagates through them (`torch.func.vjp`).

The optimizers' arithmetic (Adam, SGD with momentum, the phase's gradient-norm clip) is written here on the
torch optimizers' own state tensors, in torch's order of operations; after each step the results are copied
back, so checkpoints, resuming (with any stepper), schedules and validation see ordinary optimizers.

`cuda_graph` is the same function compiled with mode="reduce-overhead": torch captures it as CUDA graphs
(static input buffers, warm-up, one replay per batch). Where a stepper cannot run as asked (no CUDA for
cuda_graph, several processes, weight projection between phases, mixed precision, a compile that fails)
the run trains with `EagerStepper` and says why in one line, never silently differently.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Dict, List, Optional

import torch
from torch import nn

from .schedule import PHASES, EagerStepper, Stats, StepBatch

Tensors = Dict[str, torch.Tensor]


class _Hooks(nn.Module):
    """The schedule's phase losses (schedule.PHASES) and the variant's adversary pairs as one module, so
    `functional_call` can run each with the parameters it is given."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, kind: str, batch: StepBatch):
        if kind == "pairs":
            return self.model.adversary_pairs(batch)
        return PHASES[kind].loss(self.model, batch)


def clip_(grads: List[torch.Tensor], max_norm: float) -> List[torch.Tensor]:
    """torch.nn.utils.clip_grad_norm_'s arithmetic (2-norm over all, eps 1e-6, factor at most 1)."""
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * factor for g in grads]


def adam(p: torch.Tensor, g: torch.Tensor, state: Tensors, lr: torch.Tensor, group: dict):
    """One Adam update in torch's single-tensor order of operations; returns (p, state)."""
    b1, b2 = group["betas"]
    if group["weight_decay"]:
        g = g + group["weight_decay"] * p
    m = state["exp_avg"].lerp(g, 1 - b1)
    v = state["exp_avg_sq"] * b2 + (1 - b2) * g * g
    step = state["step"] + 1
    bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
    denom = v.sqrt() / bc2.sqrt() + group["eps"]
    return p - (lr / bc1) * m / denom, {"step": step, "exp_avg": m, "exp_avg_sq": v}


def sgd(p: torch.Tensor, g: torch.Tensor, state: Tensors, lr: torch.Tensor, group: dict):
    """SGD with momentum (no dampening, not Nesterov): the first step's buffer is the gradient itself."""
    if group["weight_decay"]:
        g = g + group["weight_decay"] * p
    if group["momentum"]:
        g = state["momentum_buffer"] * group["momentum"] + g
        state = {"momentum_buffer": g}
    return p - lr * g, state


UPDATES = {torch.optim.Adam: adam, torch.optim.SGD: sgd}


def fresh_state(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> Tensors:
    """The state torch's optimizer would create at its first step (the step count on the parameter's
    device, as fused and capturable Adam keep it), so eager and compiled steps can follow each other."""
    if isinstance(optimizer, torch.optim.Adam):
        return {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
    return {"momentum_buffer": torch.zeros_like(p)} if optimizer.param_groups[0]["momentum"] else {}


class StepFunction:
    """step(params, buffers, states, lrs, x, target, y, lx, ly) -> (params, states, stats): one training
    step of `model` over all its phases. `names[phase]` are the parameter names each phase's optimizer
    steps, `groups[phase]` its settings (betas, eps, weight decay, momentum), `clips[phase]` its norm cap."""

    def __init__(self, model: nn.Module, names: Dict[str, List[str]], kinds: Dict[str, type],
                 groups: Dict[str, dict], clips: Dict[str, float]):
        self.hooks, self.names, self.kinds, self.groups, self.clips = _Hooks(model), names, kinds, groups, clips

    def _call(self, tensors: Tensors, kind: str, *args):
        return torch.func.functional_call(self.hooks, {f"model.{k}": v for k, v in tensors.items()}, (kind, *args))

    def _update(self, phase: str, tensors: Tensors, grads: Tensors, states, lrs) -> Tensors:
        names = self.names[phase]
        g = [grads[n] for n in names]
        if self.clips.get(phase):
            g = clip_(g, self.clips[phase])
        update, out = UPDATES[self.kinds[phase]], {}
        for n, gn in zip(names, g):
            out[n], states[phase][n] = update(tensors[n], gn, states[phase][n], lrs[phase], self.groups[phase])
        return {**tensors, **out}

    def _grad(self, phase: str, tensors: Tensors, loss_of):
        """(gradients of loss_of(tensors) by the phase's parameters, its statistics)."""
        def f(sub):
            return loss_of({**tensors, **sub})
        return torch.func.grad(f, has_aux=True)({n: tensors[n] for n in self.names[phase]})

    def __call__(self, params: Tensors, buffers: Tensors, states, lrs: Tensors, x, target, y, lx=None, ly=None):
        """One step; its statistics come back by phase ({phase: {name: tensor}})."""
        states = {phase: dict(s) for phase, s in states.items()}
        batch = StepBatch(x=x, target=target, y=y, labeled=(lx, ly) if lx is not None else None)
        t, stats = {**params, **buffers}, {}
        if "recon" in self.names:
            grads, stats["recon"] = self._grad("recon", t, lambda p: self._call(p, "recon", batch))
            t = self._update("recon", t, grads, states, lrs)
        if "disc" in self.names:
            t, stats["disc"], stats["gen"] = self._adversaries(t, batch, states, lrs)
        if "classify" in self.names and batch.labeled is not None:
            grads, stats["classify"] = self._grad("classify", t, lambda p: self._call(p, "classify", batch))
            t = self._update("classify", t, grads, states, lrs)
        return {n: t[n] for n in params}, states, stats

    def _adversaries(self, t: Tensors, batch: StepBatch, states, lrs):
        """The discriminator and generator phases over codes drawn once, as eager does: the discriminator
        phase detaches them, the generator phase's gradient goes back through them to the encoder."""
        enc = {n: t[n] for n in self.names["gen"]}
        pairs, back = torch.func.vjp(lambda e: self._call({**t, **e}, "pairs", batch), enc)
        grads, disc_stats = self._grad("disc", t, lambda p: self._call(p, "disc", dataclasses.replace(batch, _pairs=pairs)))
        t = self._update("disc", t, grads, states, lrs)

        def gen_loss(fakes):
            drawn = {name: (fakes[name], real) for name, (_, real) in pairs.items()}
            return self._call(t, "gen", dataclasses.replace(batch, _pairs=drawn))

        by_fake, gen_stats = torch.func.grad(gen_loss, has_aux=True)({name: fake for name, (fake, _) in pairs.items()})
        (grads,) = back({name: (by_fake[name], torch.zeros_like(real)) for name, (_, real) in pairs.items()})
        return self._update("gen", t, grads, states, lrs), disc_stats, gen_stats


def _say(message: str) -> None:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        print(message, file=sys.stderr, flush=True)


class CompiledStepper:
    """The stepper of `optim.stepper=compiled`: StepFunction under torch.compile, its results copied into the
    module's parameters and the optimizers' states; EagerStepper where it cannot run (one line says why)."""

    name = "compiled"
    mode: Optional[str] = None  # torch.compile's mode
    backend = "inductor"  # the tests trace with "aot_eager": the same graph, without compiling C++

    def __init__(self, params, **eager_kwargs):
        self.eager = EagerStepper(params, **eager_kwargs)
        self.params, self.clip_norms = params, eager_kwargs.get("clip_norms") or {}
        self.stat_phase = self.eager.stat_phase
        self.fn = None
        self.fallback: Optional[str] = None  # why eager runs instead, once decided
        self._lr: Dict[str, tuple] = {}
        self.names: Dict[str, List[str]] = {}  # set by _build
        self._ran = False

    def why_not(self, model) -> Optional[str]:
        """Why this run cannot take the compiled step (None: it can)."""
        trainer = getattr(model, "_trainer", None)
        if trainer is not None and trainer.world_size > 1:
            return "several processes synchronise gradients in backward hooks"
        if model.model_cfg.get("nonnegative") == "project":
            return "model.nonnegative=project projects the weights between phases"
        if trainer is not None and str(trainer.precision) not in ("32-true", "32"):
            return f"trainer.precision={trainer.precision} (mixed precision scales the losses)"
        return None

    def step(self, model, batch: StepBatch, optimizers: Dict[str, object]) -> Stats:
        if self.fallback is None and self.fn is None:
            reason = self.why_not(model)
            if reason:
                self._fall_back(reason)
            else:
                self.fn = self._build(model, optimizers)
        if self.fallback is not None:
            return self.eager.step(model, batch, optimizers)
        try:
            return self._run(model, batch, optimizers)
        except Exception as exc:  # compiling can fail in many ways; nothing was written back yet
            if self._ran:
                raise
            self._fall_back(f"torch.compile failed ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]})")
            return self.eager.step(model, batch, optimizers)

    def _fall_back(self, reason: str) -> None:
        self.fallback = reason
        _say(f"optim.stepper={self.name}: {reason}; training with the eager stepper")

    def _build(self, model, optimizers):
        import torch._inductor.config as inductor

        inductor.fallback_random = True  # random draws from torch's own generator: what eager draws
        ids = {id(p): n for n, p in model.named_parameters()}
        opts = {phase: getattr(o, "optimizer", o) for phase, o in optimizers.items() if phase in self.params}
        names = {phase: [ids[id(p)] for p in opts[phase].param_groups[0]["params"]] for phase in opts}
        self.names = names  # phase -> its optimizer's parameter names, in the optimizer's order
        groups = {phase: {k: v for k, v in o.param_groups[0].items() if k != "params" and not torch.is_tensor(v)}
                  for phase, o in opts.items()}
        for phase, o in opts.items():
            if groups[phase].get("amsgrad") or groups[phase].get("maximize") or groups[phase].get("nesterov") or \
                    groups[phase].get("dampening"):
                raise ValueError(f"the {phase} optimizer's settings are not implemented here")
        step = StepFunction(model, names, {p: type(o) for p, o in opts.items()}, groups, self.clip_norms)
        return torch.compile(step, mode=self.mode, backend=self.backend, fullgraph=True)

    def _lrs(self, opts, device) -> Tensors:
        """Each phase's learning rate as a tensor, rewritten only when a schedule changed it."""
        out = {}
        for phase, o in opts.items():
            lr = float(o.param_groups[0]["lr"])
            if phase not in self._lr or self._lr[phase][0] != lr:
                self._lr[phase] = (lr, torch.tensor(lr, dtype=torch.float32, device=device))
            out[phase] = self._lr[phase][1]
        return out

    def _run(self, model, batch: StepBatch, optimizers) -> Stats:
        opts = {phase: getattr(o, "optimizer", o) for phase, o in optimizers.items() if phase in self.params}
        named = dict(model.named_parameters())
        states = {}
        for phase, o in opts.items():
            states[phase] = {}
            for n, p in zip(self.names[phase], o.param_groups[0]["params"]):
                if not o.state[p]:
                    o.state[p].update(fresh_state(o, p))
                states[phase][n] = {k: v for k, v in o.state[p].items() if torch.is_tensor(v)}
        params = {n: p.detach() for n, p in named.items()}
        lx, ly = batch.labeled if batch.labeled is not None else (None, None)
        new_params, new_states, by_phase = self.fn(params, dict(model.named_buffers()), states,
                                                   self._lrs(opts, batch.x.device), batch.x, batch.target, batch.y,
                                                   lx, ly)
        self._ran = True
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(new_params[n])
            for phase, o in opts.items():
                for n, p in zip(self.names[phase], o.param_groups[0]["params"]):
                    for k, v in new_states[phase][n].items():
                        o.state[p][k].copy_(v)
        stats = {}
        for phase, values in by_phase.items():  # the phases that stepped; Lightning counts them (global_step)
            getattr(optimizers[phase], "_on_before_step", lambda: None)()
            getattr(optimizers[phase], "_on_after_step", lambda: None)()
            self.stat_phase.update({k: phase for k in values})
            stats.update(values)
        return stats


class CudaGraphStepper(CompiledStepper):
    """`optim.stepper=cuda_graph`: the compiled step captured as CUDA graphs (torch.compile's
    reduce-overhead mode: static input buffers, warm-up, one replay per batch); CUDA only."""

    name = "cuda_graph"
    mode = "reduce-overhead"

    def why_not(self, model) -> Optional[str]:
        if model.device.type != "cuda":
            return f"CUDA graphs need a CUDA device; this run trains on {model.device.type}"
        return super().why_not(model)
