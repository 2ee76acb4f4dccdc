"""The repository's set-up: packaging, the conda route, the lock, CI and what git must never hold."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_deps() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {_name(r): r for r in data["project"]["dependencies"]}


def conda_deps() -> dict[str, str]:
    deps = {}
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        m = re.match(r"^  - ([A-Za-z0-9_.\-]+)(.*)$", line)
        if in_deps and m and m.group(1) not in {"python", "pip"}:
            name = CONDA_NAMES.get(m.group(1), m.group(1)).lower()
            deps[name] = name + m.group(2).strip()
    return deps


def _spec(req: str) -> str:
    return re.sub(r"\s+", "", req.split(";")[0].split("#")[0])[len(_name(req)):]


def test_environment_yml_matches_pyproject():
    """Do the conda route and the pip route install the same packages with the same version ranges?"""
    py, conda = pyproject_deps(), conda_deps()
    assert set(conda) == set(py), f"only in environment.yml: {set(conda) - set(py)}; only in pyproject: {set(py) - set(conda)}"
    for name in py:
        py_spec = _spec(py[name]).replace(",!=2.13.0", "")  # conda-forge never had the broken 2.13.0 pair
        assert _spec(conda[name]) == py_spec, f"{name}: pyproject says {py[name]!r}, environment.yml {conda[name]!r}"


def test_lock_pins_every_dependency_within_its_range():
    """Does requirements-lock.txt pin an exact version of each dependency, inside pyproject's range?"""
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[_name(name)] = version
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["test"]
    for r in map(Requirement, reqs):
        name = _name(r.name)
        assert name in pins, f"{name} is not pinned in requirements-lock.txt"
        assert r.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {r.specifier}"
    assert pins["torch"] != "2.13.0"


def test_installed_versions_are_the_locked_ones():
    """Is the environment the tests run in the locked one (so lesson outputs match)?"""
    import importlib.metadata as md

    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line.startswith(("torch==", "torchvision==", "nbgrader==", "nbval==", "matplotlib==", "scikit-learn==")):
            name, version = line.split("==")
            assert md.version(name) == version, f"{name} {md.version(name)} installed, {version} locked"


def test_ci_runs_the_readme_test_command():
    """Does .ci/run call exactly the test command the README shows first?"""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    commands = [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert "./course lab" in commands[:3] and "./course test" in commands[:3], commands[:3]
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith(("#", "set ", "cd ", "export "))]
    assert ci == ["./course test"] or ci[-1] == "exec ./course test", ci


def test_git_holds_no_generated_files():
    """Are gradebooks, submissions, checkpoints of Jupyter, caches and venvs kept out of git?"""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if not files:  # a copy of the course that is no clone (a tarball): nothing to check, except in CI
        skip_or_fail("not a git checkout", in_ci="CI runs in a git clone, and git lists no file")
    bad = [f for f in files if re.search(r"(^|/)(gradebook\.db|\.ipynb_checkpoints|__pycache__|\.venv)(/|$)|^(submitted|autograded|feedback)/", f)]
    assert not bad


def test_setup_is_quick_and_harmless_the_second_time():
    """Does running set-up again, with nothing changed, return at once?"""
    import time

    start = time.perf_counter()
    res = subprocess.run([str(ROOT / "course"), "setup"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert time.perf_counter() - start < 10
    assert Path(sys.prefix, "share", "jupyter", "kernels", "lrdiff", "kernel.json").is_file()
