"""sclandscape: the loss landscape of the supervised contrastive loss on unconstrained features.

The public surface (SPEC §5 and the names a user needs); everything else is an
implementation detail. The library never enables float64 on import: pass
float64 arrays under ``jax.enable_x64(True)`` (or set ``JAX_ENABLE_X64``).
"""

from sclandscape.critical import CriticalSettings as CriticalSettings
from sclandscape.critical import find_critical as find_critical
from sclandscape.hessian import ClassifySettings as ClassifySettings
from sclandscape.hessian import classify as classify
from sclandscape.hessian import escape_direction as escape_direction
from sclandscape.hessian import riemannian_hessian_eigs as riemannian_hessian_eigs
from sclandscape.loss import make_batches as make_batches
from sclandscape.loss import sc_gram_gradient as sc_gram_gradient
from sclandscape.loss import sc_loss as sc_loss
from sclandscape.loss import sc_loss_gram as sc_loss_gram
from sclandscape.loss import sc_loss_minibatch as sc_loss_minibatch
from sclandscape.manifold import Status as Status
from sclandscape.optimum import GlobalOptimum as GlobalOptimum
from sclandscape.optimum import balanced_optimum_loss as balanced_optimum_loss
from sclandscape.optimum import certificate as certificate
from sclandscape.optimum import global_optimum as global_optimum
from sclandscape.optimum import nonneg_optimum_loss as nonneg_optimum_loss
from sclandscape.optimum import step_optimum as step_optimum
from sclandscape.problems import Problem as Problem
from sclandscape.problems import balanced_counts as balanced_counts
from sclandscape.problems import labels_from_counts as labels_from_counts
from sclandscape.problems import step_counts as step_counts
from sclandscape.scan import ScanSettings as ScanSettings
from sclandscape.streaming import certificate_streaming as certificate_streaming
from sclandscape.streaming import sc_loss_streaming as sc_loss_streaming

__version__ = "0.1.0"
