"""The README and docs: short README with the two commands, one repository URL, the reference in docs/."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _repository_url() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(
        r'^\[project\.urls\]\s*\nRepository = "(https://github\.com/[^"/]+/[^"/]+)"', text, re.M
    )
    assert match, "pyproject.toml needs [project.urls] Repository"
    return match.group(1)


def test_readme_is_short_opens_with_the_two_commands_and_links_the_one_repository():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) < 180, len(lines)
    assert lines[2:6] == [
        "```",
        "make demo    # create the environment, install, run the default demonstration",
        "make test    # create the environment, install, run the tests",
        "```",
    ]
    owner_repo = _repository_url().removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/02_colab_tpu.ipynb"
    assert badge in readme
    assert readme.count("```python") == 1  # one Python example (and one of the command line)
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link


def test_docs_hold_the_reference_and_stand_on_their_own():
    """What the README no longer carries is in docs/guide.md; no placeholder, no machine paths."""
    guide = (ROOT / "docs" / "guide.md").read_text()
    for needle in (
        "--memory-budget",
        "SCLANDSCAPE_CACHE_DIR",
        "--coordinator",
        "check_gradient",
        "--optimizer adam",
        "DIR/.lock",
        "--resume",
        "sclandscape slice DIR",
        "hessian DIR --trace --density",
        "## Verdicts",
        "decided_by",
        "make bench-accelerator",
        "jax[tpu]",
        "progress=False",
        "sc.hessian_trace",
    ):
        assert needle in guide, needle
    texts = [ROOT / "README.md", ROOT / "notebooks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in texts:
        text = path.read_text()
        assert "<owner>" not in text, path
        assert not re.search(r"(?<![\w.])/(work|home|tmp|root)/", text), path
        assert "SPEC.md" not in text and "STYLE.md" not in text, path
