"""sclandscape: the loss landscape of the supervised contrastive loss on unconstrained features.

The public surface: the names a user needs. Everything else is reachable
through its module (``sclandscape.hessian``, ``sclandscape.streaming``, ...)
and is an implementation detail. The public names are imported when first
used (``import sclandscape`` alone imports no JAX). The library never enables
float64 on import; see ``sclandscape.precision`` for the policy.
"""

import importlib as _importlib
import typing as _typing

from sclandscape import interrupts as _interrupts

# Run as the command line, this import is already part of the command: a SIGINT or SIGTERM from
# now on is recorded and answered once the command starts (sclandscape.interrupts), never raised in JAX.
if _interrupts.invoked_as_command():
    _interrupts.defer()

# Each public name and the module that defines it, imported on first use (PEP 562): ``import
# sclandscape`` (and so the command line's ``--help``) loads neither JAX nor the numerical modules.
_EXPORTS = {
    "enable_cache": "compilation",
    "continue_minimum": "continuation",
    "ContinuationSettings": "continuation",
    "hessian_trace": "curvature",
    "hessian_density": "curvature",
    "minimum_energy_path": "paths",
    "PathSettings": "paths",
    "loss_slice": "slices",
    "slice_direction": "slices",
    "certificate": "certify",
    "certificate_streaming": "certify",
    "check_gradient": "checks",
    "check_hessian": "checks",
    "CriticalSettings": "critical",
    "find_critical": "critical",
    "escape_direction": "hessian",
    "riemannian_hessian_eigs": "hessian",
    "make_batches": "loss",
    "sc_gram_gradient": "loss",
    "sc_loss": "loss",
    "sc_loss_gram": "loss",
    "sc_loss_minibatch": "loss",
    "class_mean_gram": "metrics",
    "Status": "optim",
    "GlobalOptimum": "optimum",
    "balanced_optimum_loss": "optimum",
    "global_optimum": "optimum",
    "nonneg_optimum_loss": "optimum",
    "step_geometry": "optimum",
    "step_optimum": "optimum",
    "Problem": "problems",
    "balanced_counts": "problems",
    "labels_from_counts": "problems",
    "step_counts": "problems",
    "Progress": "progress",
    "load_scan": "results",
    "run_scan": "results",
    "summarize": "results",
    "ScanSettings": "scanner",
    "scan": "scanner",
    "sc_loss_streaming": "streaming",
    "ClassifySettings": "verdict",
    "classify": "verdict",
}

if _typing.TYPE_CHECKING:  # what static tools see: the names, from where they live
    from sclandscape.certify import certificate as certificate
    from sclandscape.certify import certificate_streaming as certificate_streaming
    from sclandscape.checks import check_gradient as check_gradient
    from sclandscape.checks import check_hessian as check_hessian
    from sclandscape.compilation import enable_cache as enable_cache
    from sclandscape.continuation import ContinuationSettings as ContinuationSettings
    from sclandscape.continuation import continue_minimum as continue_minimum
    from sclandscape.critical import CriticalSettings as CriticalSettings
    from sclandscape.critical import find_critical as find_critical
    from sclandscape.curvature import hessian_density as hessian_density
    from sclandscape.curvature import hessian_trace as hessian_trace
    from sclandscape.hessian import escape_direction as escape_direction
    from sclandscape.hessian import riemannian_hessian_eigs as riemannian_hessian_eigs
    from sclandscape.loss import make_batches as make_batches
    from sclandscape.loss import sc_gram_gradient as sc_gram_gradient
    from sclandscape.loss import sc_loss as sc_loss
    from sclandscape.loss import sc_loss_gram as sc_loss_gram
    from sclandscape.loss import sc_loss_minibatch as sc_loss_minibatch
    from sclandscape.metrics import class_mean_gram as class_mean_gram
    from sclandscape.optim import Status as Status
    from sclandscape.optimum import GlobalOptimum as GlobalOptimum
    from sclandscape.optimum import balanced_optimum_loss as balanced_optimum_loss
    from sclandscape.optimum import global_optimum as global_optimum
    from sclandscape.optimum import nonneg_optimum_loss as nonneg_optimum_loss
    from sclandscape.optimum import step_geometry as step_geometry
    from sclandscape.optimum import step_optimum as step_optimum
    from sclandscape.paths import PathSettings as PathSettings
    from sclandscape.paths import minimum_energy_path as minimum_energy_path
    from sclandscape.problems import Problem as Problem
    from sclandscape.problems import balanced_counts as balanced_counts
    from sclandscape.problems import labels_from_counts as labels_from_counts
    from sclandscape.problems import step_counts as step_counts
    from sclandscape.progress import Progress as Progress
    from sclandscape.results import load_scan as load_scan
    from sclandscape.results import run_scan as run_scan
    from sclandscape.results import summarize as summarize
    from sclandscape.scanner import ScanSettings as ScanSettings
    from sclandscape.scanner import scan as scan
    from sclandscape.slices import loss_slice as loss_slice
    from sclandscape.slices import slice_direction as slice_direction
    from sclandscape.streaming import sc_loss_streaming as sc_loss_streaming
    from sclandscape.verdict import ClassifySettings as ClassifySettings
    from sclandscape.verdict import classify as classify


def __getattr__(name: str):
    if name == "__version__":  # importlib.metadata costs more than the rest of this import
        from sclandscape import metadata

        globals()[name] = metadata.version()
        return globals()[name]
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sclandscape' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"sclandscape.{module}"), name)
    globals()[name] = value  # later lookups are ordinary attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ClassifySettings",
    "ContinuationSettings",
    "CriticalSettings",
    "GlobalOptimum",
    "PathSettings",
    "Problem",
    "Progress",
    "ScanSettings",
    "Status",
    "balanced_counts",
    "balanced_optimum_loss",
    "certificate",
    "certificate_streaming",
    "check_gradient",
    "check_hessian",
    "class_mean_gram",
    "classify",
    "continue_minimum",
    "enable_cache",
    "escape_direction",
    "find_critical",
    "global_optimum",
    "hessian_density",
    "hessian_trace",
    "labels_from_counts",
    "load_scan",
    "loss_slice",
    "make_batches",
    "minimum_energy_path",
    "nonneg_optimum_loss",
    "riemannian_hessian_eigs",
    "run_scan",
    "sc_gram_gradient",
    "sc_loss",
    "sc_loss_gram",
    "sc_loss_minibatch",
    "sc_loss_streaming",
    "scan",
    "slice_direction",
    "step_counts",
    "step_geometry",
    "step_optimum",
    "summarize",
]
