"""The shipped artefacts' sources agree with each other: the version, the lock the image installs,
the package data the wheel carries, the Dockerfile's precedence. (scripts/dist-check.sh and
scripts/image-check.sh build and run the real artefacts; these catch a slip in seconds.)"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import gatekeeper

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _locked() -> dict[str, Version]:
    pins = re.findall(
        r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", (ROOT / "requirements.lock").read_text(), re.M
    )
    return {canonicalize_name(name): Version(version) for name, version in pins}


def test_one_version_everywhere() -> None:
    version = PYPROJECT["project"]["version"]
    assert gatekeeper.__version__ == version
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()


def test_a_name_of_our_own_with_the_command_and_package_kept() -> None:
    project = PYPROJECT["project"]
    # `gatekeeper` on PyPI is somebody else's project.
    assert project["name"] == "gatekeeper-waitingroom"
    assert project["scripts"] == {"gatekeeper": "gatekeeper.cli:main"}
    # license = "Apache-2.0" (an SPDX expression) needs setuptools 77 or later.
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    locked = _locked()
    for line in PYPROJECT["project"]["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock: run `make lock`"
        assert locked[name] in req.specifier, f"requirements.lock pins {name} {locked[name]}: {req}"
    # The image builds gatekeeper's own wheel offline, with the locked setuptools.
    assert locked[canonicalize_name("setuptools")] >= Version("77")


def test_every_pin_in_the_lock_is_hashed() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", (ROOT / "requirements.lock").read_text())
    pinned = [b for b in blocks if re.match(r"[A-Za-z0-9_.-]+==", b)]
    assert pinned
    assert all("--hash=sha256:" in b for b in pinned)


def test_package_data_covers_every_file_of_the_package() -> None:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["gatekeeper"]
    package = ROOT / "gatekeeper"
    data = [
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert "py.typed" in data
    missed = [f for f in data if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not missed, f"not in [tool.setuptools.package-data], so not in the wheel: {missed}"


def test_the_image_sets_no_server_address_in_its_environment() -> None:
    # File < environment < flags: an ENV in the image would beat a mounted config's server.*.
    dockerfile = (ROOT / "Dockerfile").read_text()
    env_lines = re.findall(r"^ENV\b(?:.*\\\n)*.*$", dockerfile, re.M)
    assert env_lines
    assert not [line for line in env_lines if "WAITINGROOM_SERVER" in line]
    assert "--require-hashes" in dockerfile and "--no-index" in dockerfile


def test_the_image_python_is_a_declared_one() -> None:
    # The image's Python (its base, python:X.Y-slim) is one the package says it supports.
    dockerfile = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim$", dockerfile, re.M)
    assert match, "Dockerfile: ARG PYTHON_IMAGE=python:X.Y-slim"
    python = match.group(1)
    assert f"Programming Language :: Python :: {python}" in PYPROJECT["project"]["classifiers"]
    assert Version(python) in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_the_image_install_is_rebuilt_when_a_wheel_changes() -> None:
    # podman/buildah reuse a `RUN --mount=...,from=wheels` layer after the wheels changed; the
    # wheels' sums, copied first, change its parent layer so that it is rebuilt.
    dockerfile = (ROOT / "Dockerfile").read_text()
    copy = dockerfile.index("COPY --from=wheels /wheels.sha256")
    assert copy < dockerfile.index("RUN --mount=type=bind,from=wheels")
