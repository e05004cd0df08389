"""The scan's first-order optimiser choice: L-BFGS unchanged by default, adam / sgd (optax) projected."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sclandscape as sc
from sclandscape.explore import scanner
from sclandscape.numerics import oblique, optim
from sclandscape.numerics.optim import Status

#: The optimise fields of a scan's config.json before the optimiser choice existed (old folders resume).
OLD_OPTIMISE_FIELDS = {
    "tol",
    "max_steps",
    "polish",
    "polish_from",
    "polish_patience",
    "polish_steps",
    "polish_iters",
    "x64",
}


def test_default_settings_keep_their_identity():
    data = sc.ScanSettings().to_json()
    assert set(data["optimise"]) == OLD_OPTIMISE_FIELDS
    assert sc.ScanSettings.from_json(data) == sc.ScanSettings()
    adam = sc.ScanSettings(optimizer="adam", learning_rate=0.003)
    assert adam.to_json()["optimise"]["optimizer"] == "adam"
    assert sc.ScanSettings.from_json(adam.to_json()) == adam


def test_default_first_order_phase_is_the_lbfgs_driver_bit_for_bit():
    """The default path calls ``optim.lbfgs_steps`` exactly as before the optimiser choice."""
    problem = sc.Problem((3, 3, 2), 2, 0.5)
    labels = jnp.asarray(problem.labels)
    settings = sc.ScanSettings(x64=True)
    H0 = oblique.random_point(jax.random.key(0), problem.n, problem.dim, jnp.float64)
    state = scanner.first_order_init(H0, labels, problem.tau, settings)
    assert isinstance(state, optim.LBFGSRun)
    got = scanner.first_order_steps(state, labels, problem.tau, settings, 40)
    cost = scanner.streaming.loss_fn(labels, problem.tau, stream=False)
    want = optim.lbfgs_steps(
        cost,
        optim.lbfgs_init(H0, scanner.LBFGS_MEMORY),
        40,
        tol=settings.polish_from,
        max_steps=settings.max_steps,
        memory=scanner.LBFGS_MEMORY,
        patience=settings.polish_patience,
    )
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_optax_steps_are_projected_optax_updates():
    """One step = optax's update of the Riemannian gradient, then the rows re-normalised."""
    problem = sc.Problem((3, 3), 3, 1.0)
    labels = jnp.asarray(problem.labels)
    cost = lambda H: sc.sc_loss(H, labels, 1.0)  # noqa: E731
    H0 = oblique.random_point(jax.random.key(1), problem.n, problem.dim, jnp.float64)
    for tx in (optax.adam(0.05), optax.sgd(0.05, momentum=0.9)):
        run = optim.optax_steps(cost, optim.optax_init(H0, tx), 2, tx, tol=1e-12, max_steps=100)
        x, opt_state = H0, tx.init(H0)
        for _ in range(2):
            egrad = jax.grad(cost)(x)
            rgrad = oblique.riemannian_gradient(x, egrad)  # the gradient the step must see
            u, opt_state = tx.update(rgrad, opt_state, x)
            x = oblique.normalize_rows(x + u)
        np.testing.assert_allclose(np.asarray(run.x), np.asarray(x), atol=1e-12)
        assert int(run.steps) == 2 and int(run.status) == -1
        np.testing.assert_allclose(np.linalg.norm(np.asarray(run.x), axis=1), 1.0, atol=1e-14)


def test_optax_run_stops_and_freezes_like_lbfgs():
    problem = sc.Problem((3, 3), 3, 1.0)
    labels = jnp.asarray(problem.labels)
    cost = lambda H: sc.sc_loss(H, labels, 1.0)  # noqa: E731
    H0 = oblique.random_point(jax.random.key(2), problem.n, problem.dim, jnp.float64)
    tx = optax.adam(0.05)
    short = optim.optax_steps(cost, optim.optax_init(H0, tx), 10, tx, tol=1e-12, max_steps=3)
    assert int(short.status) == Status.MAX_STEPS and int(short.steps) == 3
    done = optim.optax_steps(cost, optim.optax_init(H0, tx), 3000, tx, tol=1e-3, max_steps=3000)
    assert int(done.status) == Status.CONVERGED and float(done.grad_norm) <= 1e-3
    g = oblique.riemannian_gradient(done.x, jax.grad(cost)(done.x))
    assert float(jnp.linalg.norm(g)) == pytest.approx(
        float(done.grad_norm), rel=1e-12
    )  # judged where it stops
    more = optim.optax_steps(cost, done, 5, tx, tol=1e-3, max_steps=3000)
    np.testing.assert_array_equal(np.asarray(more.x), np.asarray(done.x))
    assert int(more.steps) == int(done.steps)


@pytest.mark.parametrize(
    "optimizer,fields",
    [
        ("adam", dict(learning_rate=0.02)),
        pytest.param("sgd", dict(learning_rate=0.05, momentum=0.9), marks=pytest.mark.slow),
    ],
)
def test_adam_and_sgd_scans_on_a_benign_landscape(optimizer, fields):
    """d = k - 1, balanced: every local minimum is global, so every polished run must be certified global;
    the point the optimiser itself reached is recorded before the polish (|grad| <= polish_from)."""
    problem = sc.Problem((3, 3, 3), 2, 1.0)
    settings = sc.ScanSettings(tol=1e-9, x64=True, slots=4, optimizer=optimizer, **fields)
    rec = sc.scan(problem, 4, jax.random.key(0), settings)
    assert np.all(rec["status"] == Status.CONVERGED)
    assert set(rec["kind"]) == {"global_min"}
    assert np.all(rec["first_order_grad_norm"] <= settings.polish_from * (1 + 1e-9))
    L_star = sc.global_optimum(problem.counts, problem.tau).loss
    np.testing.assert_allclose(rec["first_order_gap"], rec["first_order_loss"] - L_star, rtol=0, atol=0)
    assert np.all(rec["first_order_gap"] >= -1e-9)


def test_no_polish_judges_the_optimisers_own_point():
    problem = sc.Problem((3, 3, 3), 2, 1.0)
    base = dict(tol=1e-6, x64=True, slots=4, optimizer="adam", learning_rate=0.02, polish=False)
    rec = sc.scan(problem, 4, jax.random.key(0), sc.ScanSettings(max_steps=400, **base))
    assert np.all(rec["polish_evals"] == 0) and np.all(rec["polish_iters"] == 0)
    np.testing.assert_array_equal(rec["loss"], rec["first_order_loss"])
    np.testing.assert_array_equal(rec["grad_norm"], rec["first_order_grad_norm"])
    # Adam at this rate reaches |grad| <= 1e-6 on its own here (~340 steps), and the benign
    # landscape makes every such point global.
    assert np.all(rec["status"] == Status.CONVERGED) and np.all(rec["grad_norm"] <= 1e-6)
    assert set(rec["kind"]) == {"global_min"}
    # Cut short, the same runs are reported as not converged, not rescued by a polish.
    short = sc.scan(problem, 4, jax.random.key(0), sc.ScanSettings(max_steps=20, **base))
    assert np.all(short["status"] == Status.MAX_STEPS) and set(short["kind"]) == {"not_converged"}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--learning-rate", "0.1"], "--learning-rate applies to --optimizer adam or sgd"),
        (["--optimizer", "adam", "--momentum", "0.5"], "--momentum applies to --optimizer sgd only"),
        (["--optimizer", "sgd", "--momentum", "1"], "momentum must be in [0, 1)"),
        (["--optimizer", "adam", "--learning-rate", "0"], "learning_rate"),
        (["--optimizer", "rmsprop"], "invalid choice"),
    ],
)
def test_bad_optimizer_options_exit_2_one_line(args, needle, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sclandscape.cli", "scan", "--counts", "2,2", "--dim", "2"]
        + ["--out", str(tmp_path / "s"), *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.slow  # one more scan through the command line (~15 s); the API path is tested above
def test_cli_adam_scan_records_and_summarises_the_optimisers_point(tmp_path, capsys):
    from sclandscape.cli import commands as cli
    from sclandscape.folders import atomic

    out = str(tmp_path / "s")
    args = ["scan", "--counts", "3,3", "--dim", "2", "--inits", "2", "--slots", "2", "--x64", "--quiet"]
    assert cli.main(args + ["--optimizer", "adam", "--learning-rate", "0.02", "--out", out]) == 0
    text = capsys.readouterr().out
    assert "adam itself (before the polish): 2 of 2 runs" in text
    config = json.load(open(f"{out}/config.json"))
    assert config["settings"]["optimise"]["optimizer"] == "adam"
    summary = atomic.read_json(f"{out}/summary.json")
    assert summary["first_order"]["optimizer"] == "adam" and summary["first_order"]["polished"]
