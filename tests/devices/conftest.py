"""The test sshd, one per test, for the SSH device tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd import TestSshd


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[TestSshd]:
    with TestSshd(tmp_path / "sshd") as server:
        yield server
