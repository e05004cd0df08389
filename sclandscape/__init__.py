"""sclandscape: the loss landscape of the supervised contrastive loss on unconstrained features.

The public surface: the names a user needs. Everything else is reachable
through its module (``sclandscape.theory.hessian``, ``sclandscape.numerics.streaming``, ...)
and is an implementation detail. The public names are imported when first
used (``import sclandscape`` alone imports no JAX). The library never enables
float64 on import; see ``sclandscape.core.precision`` for the policy.
"""

import importlib as _importlib
import typing as _typing

from sclandscape.core import interrupts as _interrupts

# Run as the command line, this import is already part of the command: a SIGINT or SIGTERM from
# now on is recorded and answered once the command starts (sclandscape.core.interrupts), never raised in JAX.
if _interrupts.invoked_as_command():
    _interrupts.defer()

# Each public name and the module that defines it, imported on first use (PEP 562): ``import
# sclandscape`` (and so the command line's ``--help``) loads neither JAX nor the numerical modules.
_EXPORTS = {
    "enable_cache": "core.compilation",
    "continue_minimum": "explore.continuation",
    "ContinuationSettings": "explore.continuation",
    "hessian_trace": "explore.curvature",
    "hessian_density": "explore.curvature",
    "minimum_energy_path": "explore.paths",
    "PathSettings": "explore.paths",
    "loss_slice": "explore.slices",
    "slice_direction": "explore.slices",
    "certificate": "theory.certify",
    "certificate_streaming": "theory.certify",
    "check_gradient": "explore.checks",
    "check_hessian": "explore.checks",
    "CriticalSettings": "explore.critical",
    "find_critical": "explore.critical",
    "escape_direction": "theory.hessian",
    "riemannian_hessian_eigs": "theory.hessian",
    "make_batches": "numerics.loss",
    "sc_gram_gradient": "numerics.loss",
    "sc_loss": "numerics.loss",
    "sc_loss_gram": "numerics.loss",
    "sc_loss_minibatch": "numerics.loss",
    "class_mean_gram": "theory.metrics",
    "Status": "core.settings",
    "GlobalOptimum": "theory.optimum",
    "balanced_optimum_loss": "theory.optimum",
    "global_optimum": "theory.optimum",
    "nonneg_optimum_loss": "theory.optimum",
    "step_geometry": "theory.optimum",
    "step_optimum": "theory.optimum",
    "Problem": "core.problems",
    "balanced_counts": "core.problems",
    "labels_from_counts": "core.problems",
    "step_counts": "core.problems",
    "Progress": "core.progress",
    "load_scan": "folders.reading",
    "run_scan": "studies.scan",
    "summarize": "folders.summaries",
    "ScanSettings": "core.settings",
    "scan": "explore.scanner",
    "sc_loss_streaming": "numerics.streaming",
    "ClassifySettings": "theory.verdict",
    "taylor_figure": "drawing.tools",
    "classify": "theory.verdict",
}

if _typing.TYPE_CHECKING:  # what static tools see: the names, from where they live
    from sclandscape.core.compilation import enable_cache as enable_cache
    from sclandscape.core.problems import Problem as Problem
    from sclandscape.core.problems import balanced_counts as balanced_counts
    from sclandscape.core.problems import labels_from_counts as labels_from_counts
    from sclandscape.core.problems import step_counts as step_counts
    from sclandscape.core.progress import Progress as Progress
    from sclandscape.core.settings import ScanSettings as ScanSettings
    from sclandscape.core.settings import Status as Status
    from sclandscape.drawing.tools import taylor_figure as taylor_figure
    from sclandscape.explore.checks import check_gradient as check_gradient
    from sclandscape.explore.checks import check_hessian as check_hessian
    from sclandscape.explore.continuation import ContinuationSettings as ContinuationSettings
    from sclandscape.explore.continuation import continue_minimum as continue_minimum
    from sclandscape.explore.critical import CriticalSettings as CriticalSettings
    from sclandscape.explore.critical import find_critical as find_critical
    from sclandscape.explore.curvature import hessian_density as hessian_density
    from sclandscape.explore.curvature import hessian_trace as hessian_trace
    from sclandscape.explore.paths import PathSettings as PathSettings
    from sclandscape.explore.paths import minimum_energy_path as minimum_energy_path
    from sclandscape.explore.scanner import scan as scan
    from sclandscape.explore.slices import loss_slice as loss_slice
    from sclandscape.explore.slices import slice_direction as slice_direction
    from sclandscape.folders.reading import load_scan as load_scan
    from sclandscape.folders.summaries import summarize as summarize
    from sclandscape.numerics.loss import make_batches as make_batches
    from sclandscape.numerics.loss import sc_gram_gradient as sc_gram_gradient
    from sclandscape.numerics.loss import sc_loss as sc_loss
    from sclandscape.numerics.loss import sc_loss_gram as sc_loss_gram
    from sclandscape.numerics.loss import sc_loss_minibatch as sc_loss_minibatch
    from sclandscape.numerics.streaming import sc_loss_streaming as sc_loss_streaming
    from sclandscape.studies.scan import run_scan as run_scan
    from sclandscape.theory.certify import certificate as certificate
    from sclandscape.theory.certify import certificate_streaming as certificate_streaming
    from sclandscape.theory.hessian import escape_direction as escape_direction
    from sclandscape.theory.hessian import riemannian_hessian_eigs as riemannian_hessian_eigs
    from sclandscape.theory.metrics import class_mean_gram as class_mean_gram
    from sclandscape.theory.optimum import GlobalOptimum as GlobalOptimum
    from sclandscape.theory.optimum import balanced_optimum_loss as balanced_optimum_loss
    from sclandscape.theory.optimum import global_optimum as global_optimum
    from sclandscape.theory.optimum import nonneg_optimum_loss as nonneg_optimum_loss
    from sclandscape.theory.optimum import step_geometry as step_geometry
    from sclandscape.theory.optimum import step_optimum as step_optimum
    from sclandscape.theory.verdict import ClassifySettings as ClassifySettings
    from sclandscape.theory.verdict import classify as classify


def __getattr__(name: str):
    if name == "__version__":  # importlib.metadata costs more than the rest of this import
        from sclandscape.core import metadata

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
    "taylor_figure",
]
