"""Helpers for tests: where the repo and the fixture trees are, a tiny user model and suite
files written into a directory."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Static sensor trees (sysfs, procfs, vcgencmd) of real boards and hosts.
FIXTURES = REPO / "tests" / "fixtures"

TINY_FACTORY = """
import torch


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def make():
    torch.manual_seed(0)
    return TinyNet().eval(), torch.randn(1, 16)
"""


def write_suite(directory: Path, body: str, name: str = "suite.toml") -> Path:
    """A suite file next to the tiny factory module, finding the repo's presets/devices."""
    (directory / "tinymodel.py").write_text(TINY_FACTORY)
    header = textwrap.dedent(
        f"""
        recipe_dirs = ["{REPO / "recipes"}"]
        device_dirs = ["{REPO / "devices"}"]
        """
    )
    path = directory / name
    path.write_text(header + textwrap.dedent(body))
    return path


FAST_MEASURE = """
[measure]
warmup_count = 2
warmup_seconds = 0.0
min_count = 5
min_seconds = 0.02
max_seconds = 5
timeout_seconds = 120
"""


def write_tiny_suite(
    directory: Path,
    *,
    name: str = "tiny",
    runtimes: tuple[str, ...] = ("onnxruntime", "executorch"),
    measure: str = FAST_MEASURE,
) -> Path:
    """The tiny model, fp32 and int8-static, on this machine: what the end-to-end runs of
    the command line measure."""
    return write_suite(
        directory,
        f"""
name = {json.dumps(name)}
runtimes = {json.dumps(list(runtimes))}
devices = ["local"]

[[models]]
name = "tiny"
factory = "tinymodel:make"

[variants]
fp32 = []
int8 = ["int8-static"]
"""
        + measure,
    )
