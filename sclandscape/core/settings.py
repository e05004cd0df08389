"""Frozen configuration shared by the layers: a scan's settings, the run status codes, the option lists.

JAX-free, so that reading a results folder (``folders``) can
rebuild a scan's settings without the numerics: ``ScanSettings`` (the
``optimise``, ``judge`` and ``execution`` groups, recorded in ``config.json``),
``Status`` (how a run ended, carried as data under ``vmap``), ``OPTIMIZERS``
(the first-order optimisers a scan can run) and ``MODES`` (how a caller asks
for the dense or the streaming path).
"""

from __future__ import annotations

import dataclasses
import enum

from sclandscape.core import problems


class Status(enum.IntEnum):
    """How a run ended (carried as data so one failure cannot abort a vmapped batch)."""

    CONVERGED = 0
    MAX_STEPS = 1
    NON_FINITE = 2
    STALLED = 3  # trust region collapsed before the gradient tolerance was met


#: First-order optimisers a scan can run: ``lbfgs`` (the default, above) and two optax ones.
OPTIMIZERS = ("lbfgs", "adam", "sgd")


#: How a caller asks for the path: ``"auto"`` (``use_streaming``), ``"always"`` or ``"never"``.
MODES = ("auto", "always", "never")


@dataclasses.dataclass(frozen=True)
class OptimiseSettings:
    """What each run does (part of a scan's identity).

    Attributes:
      tol: convergence tolerance on the Riemannian gradient norm (sum-form loss).
      max_steps: first-order steps allowed per run.
      polish: finish runs with the float64 polish (L-BFGS, then trust regions).
      polish_from: gradient norm at which the polish takes over.
      polish_patience: a run below ``10 * polish_from`` that has not halved its
        gradient norm for this many evaluations goes to the polish as well (a
        float32 gradient is rounding noise below ~1e-4 at small ``tau``).
      polish_steps: float64 L-BFGS evaluations that open the polish.
      polish_iters: trust-region iterations allowed in the polish after them.
      x64: run the first-order phase in float64 (the polish and the records
        always run in float64).
      optimizer: the first-order optimiser (``OPTIMIZERS``): ``"lbfgs"``
        (Riemannian L-BFGS with one-evaluation Armijo steps, the default), or
        ``"adam"`` / ``"sgd"`` (optax, ``learning_rate``; ``momentum`` for sgd,
        heavy ball, 0 for none) on ``f(rownormalise(H))``, the rows
        re-normalised after every step (``optim.optax_steps``). Same stopping
        rule, status codes, polish and classification. Scans with adam or sgd
        also record, in float64, the loss, gradient norm and gap of the point
        the optimiser itself reached (``first_order_*``), before any polish;
        with ``polish=False`` the recorded point *is* that point.
      learning_rate, momentum: of adam / sgd (ignored by lbfgs, and not
        recorded in ``to_json`` for it, so that the default settings keep
        their identity).
    """

    tol: float = 1e-5
    max_steps: int = 5000
    polish: bool = True
    polish_from: float = 1e-4
    polish_patience: int = 50
    polish_steps: int = 100
    polish_iters: int = 200
    x64: bool = False
    optimizer: str = "lbfgs"
    learning_rate: float = 1e-2
    momentum: float = 0.9

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("tol", "polish_from", "learning_rate"),
            nonnegative=("momentum",),
            integers={"max_steps": 1, "polish_patience": 1, "polish_steps": 1, "polish_iters": 1},
            choices={"optimizer": OPTIMIZERS},
        )
        if not self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")

    def to_json(self) -> dict:
        """The fields; ``learning_rate``/``momentum`` and ``optimizer`` only when it is not L-BFGS."""
        data = dataclasses.asdict(self)
        if self.optimizer == "lbfgs":
            for name in ("optimizer", "learning_rate", "momentum"):
                del data[name]
        return data


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """How converged runs are judged (part of a scan's identity). The tolerances are derived (``verdict``).

    Attributes:
      gtol_factor: a run is converged when its status is ``CONVERGED`` and its
        Riemannian gradient, re-evaluated in float64, is ``<= gtol_factor * tol``.
      prove: attempt the a-posteriori proof on each distinct non-global point.
      lift: the lifting test on each distinct local minimum below ``rank M*``.
      escapes: a run judged a saddle escapes along its most negative curvature
        direction and continues, up to this many times; ``saddle`` at the end
        of a scan means escaping failed.

    Which runs are one distinct critical point is decided with derived
    tolerances only (``census.same_point``).
    """

    gtol_factor: float = 10.0
    prove: bool = True
    lift: bool = True
    escapes: int = 3

    def __post_init__(self):
        problems.check_fields(self, positive=("gtol_factor",), integers={"escapes": 0})


@dataclasses.dataclass(frozen=True)
class ExecutionSettings:
    """How the work is executed (may change on resume: results do not depend on it beyond rounding).

    Attributes:
      chunk_steps: first-order steps per dispatch between refills.
      slots: concurrent runs, or ``None`` (default) to choose them from
        ``memory_budget`` (``plan``). Never more than the runs asked for, and
        rounded up to a multiple of the device count.
      streaming: loss, gradient, Hessian-vector products and certificate
        without the ``n x n`` matrix (``sclandscape.numerics.streaming``): ``"always"``,
        ``"never"``, or ``"auto"`` = when ``slots * n^2 > 4096^2``
        (``streaming.use_streaming``); the certificate is then a Lanczos
        estimate of ``lambda_min(S)`` instead of a dense ``eigvalsh``.
      memory_budget: bytes the slots may hold at once (``slot_bytes`` each),
        from which ``slots=None`` is chosen; ``None`` (default) is
        ``default_memory_budget()``: ``min(2 GiB, a quarter of physical memory)``.
    """

    chunk_steps: int = 25
    slots: int | None = None
    streaming: str = "auto"
    memory_budget: int | None = None

    def __post_init__(self):
        problems.check_fields(self, integers={"chunk_steps": 1}, choices={"streaming": MODES})
        if self.slots is not None:
            problems.check_integer("slots", self.slots, 1)
        if self.memory_budget is not None:
            problems.check_integer("memory_budget", self.memory_budget, 1)


_GROUPS = {"optimise": OptimiseSettings, "judge": JudgeSettings, "execution": ExecutionSettings}


@dataclasses.dataclass(frozen=True, init=False)
class ScanSettings:
    """A scan's settings: ``optimise``, ``judge`` and ``execution`` groups (recorded in ``config.json``).

    Built from the groups or from their fields by name, e.g.
    ``ScanSettings(tol=1e-9, x64=True, slots=64)``; every field of a group is
    also readable as an attribute (``settings.tol``). Hashable (a static
    ``jit`` argument).
    """

    optimise: OptimiseSettings
    judge: JudgeSettings
    execution: ExecutionSettings

    def __init__(self, optimise=None, judge=None, execution=None, **fields):
        given = {"optimise": optimise, "judge": judge, "execution": execution}
        for group, cls in _GROUPS.items():
            names = {f.name for f in dataclasses.fields(cls)}
            mine = {k: fields.pop(k) for k in list(fields) if k in names}
            value = given[group]
            if value is None:
                value = cls()
            elif not isinstance(value, cls):
                raise ValueError(f"{group} must be a {cls.__name__}, got {type(value).__name__}")
            object.__setattr__(self, group, dataclasses.replace(value, **mine) if mine else value)
        if fields:
            raise ValueError(f"unknown scan setting(s): {', '.join(sorted(fields))}")

    def __getattr__(self, name):
        if name in _GROUPS or name.startswith("__"):
            raise AttributeError(name)
        for group in _GROUPS:
            value = object.__getattribute__(self, group)
            if name in value.__dataclass_fields__:
                return getattr(value, name)
        raise AttributeError(f"ScanSettings has no setting {name!r}")

    def to_json(self) -> dict:
        return {
            group: getattr(self, group).to_json()
            if hasattr(getattr(self, group), "to_json")
            else dataclasses.asdict(getattr(self, group))
            for group in _GROUPS
        }

    @classmethod
    def from_json(cls, data: dict) -> ScanSettings:
        """From ``to_json``'s form (or the flat form of older folders)."""
        if not isinstance(data, dict):
            raise ValueError(f"scan settings must be a JSON object, got {type(data).__name__}")
        data = {k: (_without_retired(v) if k in _GROUPS else v) for k, v in _without_retired(data).items()}
        if any(group in data for group in _GROUPS):
            return cls(**{g: _GROUPS[g](**data[g]) for g in _GROUPS if g in data})
        return cls(**data)


#: Settings older folders record that no longer change anything (the census derives its tolerances).
RETIRED = ("group_atol",)


def _without_retired(data):
    return {k: v for k, v in data.items() if k not in RETIRED} if isinstance(data, dict) else data
