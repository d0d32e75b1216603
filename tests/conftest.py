"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suite_files import FAST_MEASURE, write_suite


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    return write_suite(
        tmp_path,
        """
        name = "tiny"
        runtimes = ["onnxruntime", "executorch"]
        devices = ["local"]

        [[models]]
        name = "tiny"
        factory = "tinymodel:make"

        [variants]
        fp32 = []
        int8 = ["int8-static"]
        """
        + FAST_MEASURE,
    )
