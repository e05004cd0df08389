"""The persistent compilation cache: which folder, on and off, and that the command line fills it."""

import os
import subprocess
import sys

from sclandscape import compilation

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
