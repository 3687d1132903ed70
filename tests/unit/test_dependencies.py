"""Dependencies: requirements.lock covers pyproject.toml's runtime dependencies (so they cannot drift
apart silently), the pins the code relies on, and `.env` read by python-dotenv."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from shared.config import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def _pins() -> dict[str, Version]:
    return {canonicalize_name(name): Version(version) for name, version in PIN.findall(LOCK.read_text())}


def _runtime() -> list[Requirement]:
    return [Requirement(spec) for spec in PROJECT["dependencies"]]


def test_the_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = _pins()
    problems = []
    for req in _runtime():
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}")
        # The extras asked for (PyMySQL[rsa], redis[hiredis], ...) bring packages of their own: pinned too.
        for extra in req.extras:
            for spec in importlib.metadata.requires(req.name) or []:
                sub = Requirement(spec)
                if sub.marker and sub.marker.evaluate({"extra": extra}) and not sub.marker.evaluate({"extra": ""}):
                    if canonicalize_name(sub.name) not in pins:
                        problems.append(f"{sub.name} (from {req.name}[{extra}]) is not in requirements.lock")
    assert problems == [], "run deploy/lock.sh:\n" + "\n".join(problems)


def test_every_pin_in_the_lock_carries_its_hashes() -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    assert len(entries) == len(_pins()) > 20
    for entry in entries:
        assert "==" in entry and "--hash=sha256:" in entry, entry


def test_this_environment_runs_the_versions_the_lock_pins() -> None:
    """deploy/lib.sh installs the lock first; the test extra on top must not have moved a runtime pin."""
    pins = _pins()
    moved = {}
    for req in _runtime():
        if req.marker is not None and not req.marker.evaluate():
            continue
        installed = Version(importlib.metadata.version(req.name))
        if installed != pins[canonicalize_name(req.name)]:
            moved[req.name] = f"{installed} installed, {pins[canonicalize_name(req.name)]} locked"
    assert moved == {}


def test_marshmallow_is_held_to_the_major_whose_internals_row_validator_uses() -> None:
    (marshmallow,) = [r for r in _runtime() if r.name == "marshmallow"]
    major = Version(importlib.metadata.version("marshmallow")).major
    assert major == 4
    assert not marshmallow.specifier.contains(f"{major + 1}.0") and not marshmallow.specifier.contains(
        f"{major - 1}.99"
    )


def test_openpyxl_is_a_runtime_dependency_only_because_the_service_imports_it() -> None:
    """It writes the xlsx template (shared/customers/exports.py); if nothing outside the tests imported it, it
    would belong in the test extra."""
    sources = [p for package in ("gateway", "worker", "shared") for p in (REPO / package).rglob("*.py")]
    used = any(re.search(r"^\s*(from|import) openpyxl", p.read_text(), re.MULTILINE) for p in sources)
    runtime = {canonicalize_name(r.name) for r in _runtime()}
    tests = {canonicalize_name(Requirement(s).name) for s in PROJECT["optional-dependencies"]["test"]}
    assert used and "openpyxl" in runtime
    assert ("openpyxl" in runtime) == used or "openpyxl" in tests


def test_dotenv_is_read_as_python_dotenv_reads_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# the keys\n"
        "API_KEYS=k # prod\n"
        "export PORT=9300\n"
        'WEBHOOK_SECRET="s3cret # not a comment"\n'
        "REDIS_PREFIX='dev:'\n"
        'HOST="0.0.0.0"   # inline comment after quotes\n'
        "\n"
        "log_level=debug\n"
    )
    s = load_settings({}, cwd=tmp_path)
    assert s.api_keys == ("k",)
    assert s.port == 9300
    assert s.webhook_secret == "s3cret # not a comment"
    assert s.redis_prefix == "dev:"
    assert s.host == "0.0.0.0"
    assert s.log_level == "DEBUG"
    # The environment still wins over .env; ${VAR} is not expanded.
    (tmp_path / ".env").write_text("PORT=9300\nWEBHOOK_SECRET=${HOME}x\n")
    s = load_settings({"PORT": "9400", "HOME": "/root"}, cwd=tmp_path)
    assert (s.port, s.webhook_secret) == (9400, "${HOME}x")


def test_a_dotenv_variable_without_a_value_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=9300\nAPI_KEYS\n")
    with pytest.raises(SettingsError, match="'API_KEYS' has no value"):
        load_settings({}, cwd=tmp_path)
