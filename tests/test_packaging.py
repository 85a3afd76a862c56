"""The wheel and the sdist a release uploads: built from a copy of the repository, their files,
their metadata (classifiers, Project-URLs, authors, the README as description), `twine check`,
and optx imported from the installed wheel."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "optx").rglob("*.py"))
URLS = {"Documentation": "https://optx-dev.github.io/optx/",
        "Source": "https://github.com/optx-dev/optx",
        "Issues": "https://github.com/optx-dev/optx/issues",
        "Changelog": "https://github.com/optx-dev/optx/blob/main/CHANGELOG.md"}


def _checkout_files() -> list[str]:
    """The checkout's files: tracked, or new and not ignored."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
            capture_output=True, check=True).stdout
        return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                and not {".venv", ".git", "build", "__pycache__"} & set(p.parts)]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """A wheel and an sdist built from a clean copy of the checkout (the checkout's own build/
    and egg-info stay untouched)."""
    src = tmp_path_factory.mktemp("src")
    for rel in _checkout_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir",
         str(out), str(src)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("jax_optx-*.whl")
    (sdist,) = out.glob("jax_optx-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_holds_the_package_and_nothing_else(dist):
    with zipfile.ZipFile(dist["wheel"]) as z:
        names = z.namelist()
    code = sorted(n for n in names if n.endswith(".py"))
    assert code == MODULES
    assert "optx/py.typed" in names
    assert not [n for n in names if not n.startswith(("optx/", "jax_optx-"))]


def test_sdist_is_the_library_without_the_tests(dist):
    with tarfile.open(dist["sdist"]) as t:
        names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"} <= set(names)
    assert sorted(n for n in names if n.startswith("optx/") and n.endswith(".py")) == MODULES
    # The tests need the repository (conftest, registry, porting scripts, data, workers).
    for left_out in ("tests/", "docs/", "benchmarks/", "examples/", "notebooks/", ".ci/"):
        assert not [n for n in names if n.startswith(left_out)], left_out


def test_metadata(dist):
    with zipfile.ZipFile(dist["wheel"]) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        raw = z.read(meta_name)
    meta = email.message_from_bytes(raw)
    import optx

    assert meta["Name"] == "jax-optx" and meta["Version"] == optx.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Author"] and meta["Maintainer"]
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3" in classifiers
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in classifiers)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {k: urls.get(k) for k in URLS} == URLS
    assert meta["Description-Content-Type"] == "text/markdown"
    description = raw.decode().split("\n\n", 1)[1]
    assert description.strip() == (ROOT / "README.md").read_text().strip()


def test_twine_check(dist):
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                             str(dist["wheel"]), str(dist["sdist"])],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_installed_wheel_imports(dist, tmp_path):
    """optx from the wheel alone (its dependencies from this environment), outside the repo."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", str(target), str(dist["wheel"])], check=True)
    result = subprocess.run(
        [sys.executable, "-c", "import optx, optx.optim; print(optx.__file__)"],
        cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(target), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path(result.stdout.strip()).is_relative_to(target)


def test_readme_links_work_on_a_package_index():
    """PyPI shows the README without the repository: every link is absolute."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert links
    relative = [link for link in links if not link.startswith("https://")]
    assert relative == []
    assert "pip install jax-optx" in readme
    for url in URLS.values():
        assert url in readme
