"""The hashed lock files (requirements/*.lock, written by scripts/lock) match pyproject.toml: every
declared requirement is pinned at a version its specifier allows, the dev lock agrees with the
runtime lock, and every pin carries hashes. Fails when someone adds or changes a dependency
without re-locking (the message says to run scripts/lock)."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.server import REPO

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]*?))?\s*\\?$")
RELOCK = "requirements out of date with pyproject.toml: run scripts/lock"


def pins(lock: str) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)] (a universal lock may pin one package per Python range)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for line in lock.splitlines():
        if m := PIN.match(line):
            out.setdefault(canonicalize_name(m.group(1)), []).append((m.group(2), m.group(3) or ""))
    return out


def declared(pyproject: dict[str, Any], extras: tuple[str, ...]) -> list[Requirement]:
    """[project].dependencies, the build backend and the given extras, with the project's
    references to its own extras (ecmo-risk-service[train]) expanded."""
    project = pyproject["project"]
    build_in = (REPO / "requirements" / "build.in").read_text().splitlines()
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for r in build_in if r.strip() and not r.startswith("#")]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project.get("optional-dependencies", {}).get(extra, []):
            req = Requirement(text)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


def problems(pyproject: dict[str, Any], extras: tuple[str, ...], lock: str) -> list[str]:
    locked = pins(lock)
    found = []
    for req in declared(pyproject, extras):
        entries = locked.get(canonicalize_name(req.name))
        if not entries:
            found.append(f"{req}: not in the lock")
        for version, _ in entries or []:
            if not req.specifier.contains(version, prereleases=True):
                found.append(f"{req}: locked at {version}")
    return found


PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCKS = {"runtime": (), "dev": ("dev",)}


@pytest.mark.parametrize("name", LOCKS)
def test_lock_pins_every_declared_requirement_within_its_range(name: str) -> None:
    lock = (REPO / "requirements" / f"{name}.lock").read_text()
    assert problems(PYPROJECT, LOCKS[name], lock) == [], RELOCK


def test_runtime_lock_holds_no_training_or_dev_tools() -> None:
    runtime = pins((REPO / "requirements" / "runtime.lock").read_text())
    assert {"matplotlib", "pytest", "mypy", "ruff", "uv", "schemathesis"}.isdisjoint(runtime)


def test_dev_lock_agrees_with_runtime_lock() -> None:
    runtime = pins((REPO / "requirements" / "runtime.lock").read_text())
    dev = pins((REPO / "requirements" / "dev.lock").read_text())
    for name, entries in runtime.items():
        # The same versions; the dev set may need a package on more Pythons than the runtime set
        # does (typing-extensions: runtime only below 3.15, for anyio), so its marker may be wider.
        versions = [version for version, _marker in entries]
        assert [version for version, _marker in dev.get(name, [])] == versions, (name, RELOCK)


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_carries_a_hash(name: str) -> None:
    lines = (REPO / "requirements" / f"{name}.lock").read_text().splitlines()
    for i, line in enumerate(lines):
        if PIN.match(line):
            assert line.endswith("\\") and "--hash=sha256:" in lines[i + 1], line


def test_an_unlocked_dependency_or_range_is_caught() -> None:
    lock = (REPO / "requirements" / "dev.lock").read_text()
    added = {**PYPROJECT, "project": {**PYPROJECT["project"]}}
    added["project"]["dependencies"] = [*PYPROJECT["project"]["dependencies"], "fhir.resources>=8"]
    assert problems(added, ("dev",), lock) == ["fhir.resources>=8: not in the lock"]
    narrowed = {**PYPROJECT, "project": {**PYPROJECT["project"]}}
    narrowed["project"]["dependencies"] = ["flask<1", *PYPROJECT["project"]["dependencies"][1:]]
    assert [p.split(":")[0] for p in problems(narrowed, ("dev",), lock)] == ["flask<1"]


def test_installs_come_from_the_locks_with_hashes() -> None:
    setup = (REPO / "scripts" / "setup").read_text()
    assert '--require-hashes --no-deps -r "requirements/$mode.lock"' in setup
    assert "scripts/setup --runtime" in (REPO / "scripts" / "serve").read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY requirements/runtime.lock" in dockerfile
    assert "--require-hashes --no-deps -r runtime.lock" in dockerfile
    assert "!requirements/runtime.lock" in (REPO / ".dockerignore").read_text().splitlines()
