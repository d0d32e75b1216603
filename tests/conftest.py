"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suite_files import write_tiny_suite


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One zoo weight cache for the session: a model the first test file trains, the
    next ones load (each build still gets its own module, so no test sees another's)."""
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    return write_tiny_suite(tmp_path)


@pytest.fixture(scope="session")
def session_build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One place for the session's trained models and built artifacts
    (``$HARNESS_BUILD_DIR``), shared by the tests that use :func:`shared_builds`."""
    return tmp_path_factory.mktemp("builds")


@pytest.fixture
def shared_builds(session_build_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Build into the session's shared directory (this process and the harness processes
    a test starts): for tests about runs, not about building, so the slow set exports
    each model once. A test that looks at ``results/artifacts`` or needs a cold build
    does not use it."""
    monkeypatch.setenv("HARNESS_BUILD_DIR", str(session_build_dir))
    return session_build_dir
