"""The full ``n x n`` convex relaxation solved with CVXPY: an independent cross-check of CLS.

``min f(G)`` over ``{G PSD, G_ii = 1}`` with ``f`` the sum-form SC loss of
docs/maths.md §1 written as exponential-cone-representable log-sum-exps. Only for
small ``n`` (it is the slow, general-purpose reference the class-level
program is compared against); needs the optional ``cvxpy`` dependency
(``pip install sclandscape[bench]``).
"""

from __future__ import annotations

import numpy as np

from sclandscape.core import problems


def solve_full_relaxation(labels, tau, solver: str = "CLARABEL", **solver_options):
    """Return ``(value, G, solve_time_s)`` of the ``n x n`` relaxation solved by CVXPY.

    ``solve_time_s`` is the solver's own time as CVXPY reports it (without
    CVXPY's canonicalisation of the problem).
    """
    try:
        import cvxpy as cp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("solve_full_relaxation needs cvxpy: pip install 'sclandscape[bench]'") from err
    labels = problems.check_labels(labels)
    tau = problems.check_tau(tau)
    n = labels.size
    G = cp.Variable((n, n), symmetric=True)
    terms = []
    for i in range(n):
        others = np.flatnonzero(np.arange(n) != i)
        positives = np.flatnonzero((labels == labels[i]) & (np.arange(n) != i))
        terms.append(cp.log_sum_exp(G[i, others] / tau) - cp.sum(G[i, positives]) / (positives.size * tau))
    problem = cp.Problem(cp.Minimize(cp.sum(cp.hstack(terms))), [G >> 0, cp.diag(G) == 1])
    problem.solve(solver=solver, **solver_options)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"CVXPY ({solver}) ended with status {problem.status}")
    return float(problem.value), np.asarray(G.value), problem.solver_stats.solve_time
