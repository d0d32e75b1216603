"""Content-addressed artifacts and the cached intermediate products that feed them.

An artifact's key hashes everything that decides its bytes: the model's identity, the
recipe chain with its parameters, the runtime, the target CPU and the versions of the
libraries involved. Keys are computed from configuration alone, so a run whose
artifacts exist never has to build (or train) a model. Files are written to a
temporary name and renamed, so an interrupted build never leaves a file that looks
complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import harness
from harness.export.registry import SHARED_VERSIONED_PACKAGES

# Packages whose code decides an artifact's bytes: a change to any of their files must
# invalidate cached models, transforms and artifacts even when the version number stays.
_CODE_PACKAGES = ("models", "recipes", "export")


@cache
def harness_code_digest() -> str:
    root = Path(harness.__file__).resolve().parent
    h = hashlib.sha256()
    for package in _CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


@cache
def library_versions() -> dict[str, str]:
    versions = {"harness": harness.__version__, "harness_code": harness_code_digest()}
    # Libraries whose upgrade must invalidate every cached artifact.
    for package in SHARED_VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


# Where models, transforms and artifacts are built, when not in the results directory:
# several results directories (an experiment each, or a test session) then share one set
# of trained models and built artifacts. Safe because both are content-addressed.
BUILD_DIR_ENV = "HARNESS_BUILD_DIR"


def build_dirs(results_dir: Path) -> tuple[Path, Path]:
    """(model cache, artifact store) of a results directory: ``cache/`` and
    ``artifacts/`` in it, or in ``$HARNESS_BUILD_DIR`` when that is set."""
    base = Path(os.environ.get(BUILD_DIR_ENV) or results_dir)
    return base / "cache", base / "artifacts"


def digest(obj: Any) -> str:
    """sha256 of a canonical JSON rendering."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


@dataclass(frozen=True)
class Artifact:
    key: str
    path: Path
    meta: dict[str, Any]

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


class ArtifactStore:
    """``root/<key[:2]>/<key>/model.<suffix>`` plus ``meta.json`` written last: an artifact
    exists only once its sidecar does."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str) -> Artifact | None:
        meta_path = self._dir(key) / "meta.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        path = self._dir(key) / meta["file"]
        if not path.is_file() or path.stat().st_size != meta.get("size_bytes"):
            return None
        return Artifact(key=key, path=path, meta=meta)

    def staging_path(self, key: str, suffix: str) -> Path:
        """Where an exporter writes; :meth:`commit` moves it into place."""
        directory = self._dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f".model{suffix}.partial-{os.getpid()}"

    def commit(
        self,
        key: str,
        staged: Path,
        suffix: str,
        meta: dict[str, Any],
        sha256: str | None = None,
    ) -> Artifact:
        """Move ``staged`` into place and write the sidecar (``sha256``: the staged
        file's, when the caller has it already)."""
        directory = self._dir(key)
        final = directory / f"model{suffix}"
        os.replace(staged, final)
        meta = {
            **meta,
            "file": final.name,
            "size_bytes": final.stat().st_size,
            "sha256": sha256 or file_sha256(final),
        }
        atomic_write_json(directory / "meta.json", meta)
        return Artifact(key=key, path=final, meta=meta)

    def store_copy(
        self,
        key: str,
        source: Path,
        meta: dict[str, Any],
        companions: Sequence[str] = (),
        check: Callable[[str], None] | None = None,
    ) -> Artifact:
        """Keep a copy of a ready model file under ``key``, so that what a run measured
        stays measurable (``compare --interleave``) whatever becomes of the user's file.
        ``companions`` are files the model names by a path relative to its own (ONNX
        external data), copied beside it under the same names. ``check`` gets the copy's
        sha256 before it is committed and raises when it is not the content ``key`` was
        made from (the file changed while it was read)."""
        source = Path(source)
        directory = self._dir(key)
        staged = self.staging_path(key, source.suffix)
        try:
            shutil.copyfile(source, staged)
            sha256 = file_sha256(staged)
            if check is not None:
                check(sha256)
            for name in companions:
                target = directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
                shutil.copyfile(source.parent / name, partial)
                os.replace(partial, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return self.commit(key, staged, source.suffix, meta, sha256)
