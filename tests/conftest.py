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
