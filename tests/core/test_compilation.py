"""The persistent compilation cache: which folder, on and off, and that the command line fills it."""

import os
import subprocess
import sys

import pytest

from sclandscape.core import compilation

CLI = [sys.executable, "-m", "sclandscape.cli"]
OPTIMUM = ["optimum", "--classes", "2", "--per-class", "2", "--tau", "1", "--json"]


def test_cache_dir_from_the_environment(tmp_path):
    home = os.path.expanduser("~")
    assert compilation.cache_dir({}) == os.path.join(home, ".cache", "sclandscape", "jax")
    assert compilation.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "sclandscape" / "jax")
    mine = {"XDG_CACHE_HOME": "/elsewhere", compilation.ENV: str(tmp_path / "c")}
    assert compilation.cache_dir(mine) == str(tmp_path / "c")
    for off in ("off", "OFF", "", " "):
        assert compilation.cache_dir({compilation.ENV: off}) is None


def test_enable_cache_off_changes_nothing(monkeypatch):
    monkeypatch.setenv(compilation.ENV, "off")
    assert compilation.enable_cache() is None


def _run(args, env):
    env = {k: v for k, v in os.environ.items() if k not in (compilation.ENV, "XDG_CACHE_HOME")} | env
    return subprocess.run(CLI + args, capture_output=True, text=True, env=env, timeout=300)


def test_command_line_fills_the_cache_unless_told_not_to(tmp_path):
    done = _run(OPTIMUM, {"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert done.returncode == 0, done.stderr
    assert os.listdir(tmp_path / "xdg" / "sclandscape" / "jax")  # compiled programs were written
    done = _run([*OPTIMUM, "--no-cache"], {compilation.ENV: str(tmp_path / "never")})
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "never").exists()


def test_stopwatch_splits_compilation_from_the_rest():
    import jax
    import jax.numpy as jnp

    x = jnp.arange(5.0)
    with compilation.Stopwatch() as watch:
        jax.jit(lambda v: jnp.sin(v) * 3.0 + v.sum())(x).block_until_ready()  # a fresh program
    first = watch.to_json()
    assert first["compile_s"] > 0 and first["run_s"] >= 0
    assert first["compile_s"] + first["run_s"] == first["total_s"]
    assert watch.total_s == first["total_s"]  # stopped: it no longer moves
    with compilation.Stopwatch() as again:
        x.sum().block_until_ready()  # nothing to compile for a jitted program met before
        jax.jit(jnp.cos)(x)
        jax.jit(jnp.cos)(x)
    assert 0 <= again.compile_s <= again.total_s


def test_stopwatch_counts_overlapping_spans_once():
    watch = compilation.Stopwatch()
    watch._start, watch._stop = 100.0, 110.0
    for span in [(101.0, 105.0), (102.0, 103.0), (104.0, 106.0), (99.0, 100.5), (109.0, 120.0)]:
        watch._listen(compilation.COMPILE_EVENTS[0], *span)
    watch._listen("/jax/something/else", 100.0, 110.0)
    assert watch.compile_s == pytest.approx(5.0 + 0.5 + 1.0)
    assert watch.run_s == pytest.approx(10.0 - 6.5)


def test_program_is_traced_once_and_then_read_from_disk(tmp_path, monkeypatch):
    import jax
    import jax.numpy as jnp
    import numpy as np

    monkeypatch.setitem(compilation._EXPORTS, "dir", str(tmp_path / "exports"))
    traced = []

    def make():  # a new function object each time, as a new process has (JAX caches traces per function)
        def fn(x, y):
            traced.append(1)  # runs only while JAX traces
            return {"sum": jnp.sum(x * y), "out": jnp.sin(x) + y}

        return fn

    x, y = jnp.arange(6.0).reshape(2, 3), jnp.float64(2.0)
    first = compilation.Program(make(), "test-program", ("static", 1))(x, y)
    assert len(traced) == 1 and len(os.listdir(tmp_path / "exports")) == 1
    # A new program of the same name and static data (a later process) reads it back: no tracing.
    again = compilation.Program(make(), "test-program", ("static", 1))(x, y)
    assert len(traced) == 1
    expected = jax.jit(make())(x, y)
    for got in (first, again):
        np.testing.assert_array_equal(got["out"], expected["out"])
        assert float(got["sum"]) == float(expected["sum"])
    # Other static data, or other shapes, are other programs.
    compilation.Program(make(), "test-program", ("static", 2))(x, y)
    compilation.Program(make(), "test-program", ("static", 1))(x[:1], y)
    assert len(traced) == 4 and len(os.listdir(tmp_path / "exports")) == 3
    # A damaged file is traced again, not trusted.
    for name in os.listdir(tmp_path / "exports"):
        (tmp_path / "exports" / name).write_bytes(b"damaged")
    again = compilation.Program(make(), "test-program", ("static", 1))(x, y)
    np.testing.assert_array_equal(again["out"], expected["out"])
    assert len(traced) == 5


def test_program_without_a_cache_is_jit(monkeypatch):
    import jax.numpy as jnp

    monkeypatch.setitem(compilation._EXPORTS, "dir", None)
    program = compilation.Program(lambda x: 2 * x, "test-plain")
    assert float(program(jnp.float64(3.0))) == 6.0
