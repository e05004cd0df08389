"""sclandscape: the loss landscape of the supervised contrastive loss on unconstrained features.

The public surface: the names a user needs. Everything else is reachable
through its module (``sclandscape.hessian``, ``sclandscape.streaming``, ...)
and is an implementation detail. The library never enables float64 on
import; see ``sclandscape.precision`` for the policy.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from sclandscape import interrupts as _interrupts

# Run as the command line, this import of JAX is already part of the command: a SIGINT or SIGTERM
# now is recorded and answered once the command starts (sclandscape.interrupts), never raised in JAX.
if _interrupts.invoked_as_command():
    _interrupts.defer()

from sclandscape.certify import certificate as certificate
from sclandscape.certify import certificate_streaming as certificate_streaming
from sclandscape.checks import check_gradient as check_gradient
from sclandscape.checks import check_hessian as check_hessian
from sclandscape.critical import CriticalSettings as CriticalSettings
from sclandscape.critical import find_critical as find_critical
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
from sclandscape.streaming import sc_loss_streaming as sc_loss_streaming
from sclandscape.verdict import ClassifySettings as ClassifySettings
from sclandscape.verdict import classify as classify

try:
    __version__ = _version("sclandscape")
except _PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ClassifySettings",
    "CriticalSettings",
    "GlobalOptimum",
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
    "escape_direction",
    "find_critical",
    "global_optimum",
    "labels_from_counts",
    "load_scan",
    "make_batches",
    "nonneg_optimum_loss",
    "riemannian_hessian_eigs",
    "run_scan",
    "sc_gram_gradient",
    "sc_loss",
    "sc_loss_gram",
    "sc_loss_minibatch",
    "sc_loss_streaming",
    "scan",
    "step_counts",
    "step_geometry",
    "step_optimum",
    "summarize",
]
