"""A Python "site" directory holding a broken install, for ``devices check`` tests.

The package is real as far as Python can tell: its ``*.dist-info`` says it is installed
(``importlib.metadata`` finds the version), and importing it runs its ``__init__``,
which fails the way a bad wheel does. Put the directory first on ``PYTHONPATH``.
"""

from __future__ import annotations

from pathlib import Path

MISSING_LIBRARY = (
    "raise ImportError('libonnxruntime.so.1.17.1: cannot open shared object file: "
    "No such file or directory')\n"
)
SEGFAULT = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
HANG = "import time\ntime.sleep(3600)\n"


def broken_site(directory: Path, package: str, init: str, version: str = "9.9.9") -> Path:
    """``directory`` with ``package`` (whose ``__init__.py`` is ``init``) and its
    dist-info at ``version``."""
    (directory / package).mkdir(parents=True, exist_ok=True)
    (directory / package / "__init__.py").write_text(init)
    info = directory / f"{package}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    (info / "RECORD").write_text("")
    return directory
