"""From a suite's model entry and variant to an artifact on disk.

model source -> transform recipes (shared by every runtime, cached) -> exporter
(applies the quantize step, if any) -> artifact store. Each expensive product is cached
on disk under a content key and memoised for the run, so a variant trained once
(distillation, pruning fine-tune) is exported to every runtime without retraining.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import (
    Artifact,
    ArtifactStore,
    atomic_write_json,
    digest,
    file_sha256,
    library_versions,
)
from harness.errors import ConfigError, HarnessError, ModelError, RecipeError
from harness.export.registry import file_suffixes, runtime_spec
from harness.models.base import ModelBundle
from harness.models.inputs import (
    InputSpec,
    generate_batch,
    save_batch,
    specs_from_dicts,
    specs_to_dicts,
)
from harness.recipes.base import QuantRequest, RecipeContext, TransformRecipe
from harness.suite.config import ModelEntry, Suite, Variant, source_error
from harness.target import TargetInfo

FILE_EVAL_SAMPLES = 16  # inputs a ready file is run on (outputs kept, nothing to score)


@dataclass(frozen=True)
class ModelData:
    """What scoring needs, cached so measuring a built artifact never rebuilds the model.

    ``eval_inputs`` is the runner-readable file of evaluation inputs (``.npy`` for a
    one-input model, ``.npz`` of arrays named after the inputs otherwise); ``inputs`` the
    model's input specs; ``reference`` the fp32 PyTorch model's first output on those
    inputs; ``degenerate`` why that reference cannot tell variants apart by top-1
    agreement (empty when it can; see :func:`harness.results.scoring.degenerate_reasons`).
    """

    eval_inputs: Path
    labels: np.ndarray | None
    reference: np.ndarray | None  # fp32 PyTorch outputs on eval_inputs
    inputs: tuple[InputSpec, ...]
    info: dict[str, Any]
    degenerate: tuple[str, ...] = ()

    @property
    def input_shape(self) -> list[int]:
        """The first input's shape (for callers that only know one-input models)."""
        return list(self.inputs[0].shape)


def _np_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


class Pipeline:
    def __init__(
        self,
        suite: Suite,
        cache_dir: Path,
        artifacts: ArtifactStore,
        fresh: bool = False,
        log: Callable[[str], None] = print,
    ):
        self.suite = suite
        self.cache_dir = Path(cache_dir)
        self.artifacts = artifacts
        self.fresh = fresh
        self.log = log
        self._bundles: dict[str, ModelBundle] = {}
        self._transformed: dict[str, tuple[ModelBundle, list[dict[str, Any]]]] = {}
        self._failed_transforms: dict[str, HarnessError] = {}
        self._refreshed: set[str] = set()

    # --- identities -------------------------------------------------------------

    def model_identity(self, entry: ModelEntry) -> dict[str, Any]:
        if entry.zoo is not None:
            return {"zoo": entry.zoo, "params": entry.params}
        if entry.factory is not None:
            module_name = entry.factory.partition(":")[0]
            try:
                with self._suite_on_path():
                    spec = importlib.util.find_spec(module_name)
            except Exception:
                # Its package fails as it loads: the cell's model_error says why (from
                # bundle()); the identity must not stop the walk that records it.
                spec = None
            origin = spec.origin if spec is not None else None
            source = file_sha256(Path(origin)) if origin and Path(origin).is_file() else None
            return {"factory": entry.factory, "source_sha256": source}
        path = self.suite.model_path(entry)
        identity: dict[str, Any] = {"file_sha256": file_sha256(path)}
        external = _external_data_files(path)
        if external:  # weights outside the .onnx are part of what is measured
            identity["external_data"] = {name: file_sha256(path.parent / name) for name in external}
        return identity

    def model_key(self, entry: ModelEntry) -> str:
        return _model_key(self.model_identity(entry))

    def artifact_key(
        self, entry: ModelEntry, variant: Variant, runtime: str, target: TargetInfo
    ) -> str:
        if entry.file is not None:
            return self.model_key(entry)
        # Runtimes that measure another's artifact (OpenVINO on the ONNX file) share it.
        builder = runtime_spec(runtime_spec(runtime).builds_as)
        key: dict[str, Any] = {
            "model": self.model_identity(entry),
            "chain": variant.lineage_for_hash(),
            "runtime": builder.name,
            "target": target.to_dict(),
            "versions": library_versions(),
        }
        own = builder.own_versions()
        if own:  # absent for the runtimes whose packages the shared table holds
            key["runtime_versions"] = own
        return digest(key)

    # --- model sources ----------------------------------------------------------

    def _suite_on_path(self) -> _SysPath:
        return _SysPath(self.suite.directory)

    def bundle(self, entry: ModelEntry) -> ModelBundle:
        if entry.name not in self._bundles:
            started = time.perf_counter()
            if entry.zoo is not None:
                from harness.models.zoo import build_model

                bundle = build_model(entry.zoo, entry.params, self.cache_dir)
            else:
                from harness.models.loaders import load_factory_model

                assert entry.factory is not None
                try:
                    with self._suite_on_path():
                        bundle = load_factory_model(entry.factory, self.cache_dir)
                except (ConfigError, ModelError) as exc:
                    # Name the suite file and models[i].factory, as `validate` does.
                    index = self.suite.models.index(entry)
                    raise source_error(exc, self.suite.path, index, "factory") from exc
            bundle = replace(bundle, name=entry.name)
            self.log(f"model {entry.name}: ready in {time.perf_counter() - started:.1f} s")
            self._bundles[entry.name] = bundle
        return self._bundles[entry.name]

    def model_data(self, entry: ModelEntry) -> ModelData:
        """Eval inputs, labels and fp32 reference outputs, cached per model key."""
        directory = self.cache_dir / "models" / self.model_key(entry)
        info_path = directory / "info.json"
        if info_path.is_file() and not self._fresh_once(f"data:{directory}"):
            info = json.loads(info_path.read_text())
            # A cache from before input specs (one float input_shape) is rebuilt.
            if "inputs" in info and (directory / info["eval_inputs"]).is_file():
                labels_path, ref_path = directory / "labels.npy", directory / "reference.npy"
                return ModelData(
                    eval_inputs=directory / info["eval_inputs"],
                    labels=np.load(labels_path) if labels_path.is_file() else None,
                    reference=np.load(ref_path) if ref_path.is_file() else None,
                    inputs=specs_from_dicts(info["inputs"]),
                    info=info["info"],
                    degenerate=tuple(info.get("degenerate") or ()),
                )
        directory.mkdir(parents=True, exist_ok=True)
        if entry.file is not None:
            data = self._file_model_data(entry, directory)
        else:
            data = self._torch_model_data(entry, directory)
        atomic_write_json(
            info_path,
            {
                "inputs": specs_to_dicts(data.inputs),
                "eval_inputs": data.eval_inputs.name,
                "info": data.info,
                "degenerate": list(data.degenerate),
            },
        )
        return data

    def _torch_model_data(self, entry: ModelEntry, directory: Path) -> ModelData:
        from harness.recipes.training import predict_logits
        from harness.results.scoring import degenerate_reasons

        bundle = self.bundle(entry)
        specs = bundle.input_specs
        inputs = bundle.data.eval_inputs
        try:
            reference = predict_logits(bundle.module, inputs).numpy()
        except Exception as exc:
            ranges = "; ".join(
                f"input {s.name!r}: ids in [{s.id_range[0]}, {s.id_range[1]}) from {s.range_source}"
                for s in specs
                if s.id_range is not None
            )
            raise ModelError(
                f"{entry.name}: the fp32 model fails on its evaluation inputs"
                + (f" ({ranges})" if ranges else "")
                + f": {type(exc).__name__}: {exc}"
            ) from exc
        eval_path = save_batch(directory, "eval_inputs", inputs, specs)
        _np_save(directory / "reference.npy", reference)
        labels = bundle.data.eval_labels
        if labels is not None:
            _np_save(directory / "labels.npy", np.asarray(labels))
        return ModelData(
            eval_inputs=eval_path,
            labels=labels,
            reference=reference,
            inputs=specs,
            info=dict(bundle.info),
            degenerate=tuple(
                degenerate_reasons(reference, embedding=bundle.info.get("output") == "embedding")
            ),
        )

    def _file_model_data(self, entry: ModelEntry, directory: Path) -> ModelData:
        from harness.models.loaders import load_file_model

        model = load_file_model(self.suite.model_path(entry), input_shape=entry.input_shape)
        rng = np.random.default_rng(self.suite.measure.seed)
        inputs = generate_batch(model.inputs, rng, FILE_EVAL_SAMPLES)
        return ModelData(
            eval_inputs=save_batch(directory, "eval_inputs", inputs, model.inputs),
            labels=None,
            reference=None,
            inputs=model.inputs,
            info={},
        )

    def _fresh_once(self, token: str) -> bool:
        """With --fresh, each cached product is rebuilt once per run, then reused."""
        if not self.fresh or token in self._refreshed:
            return False
        self._refreshed.add(token)
        return True

    # --- transforms -------------------------------------------------------------

    def transformed(
        self, entry: ModelEntry, variant: Variant
    ) -> tuple[ModelBundle, list[dict[str, Any]]]:
        """The model after the chain's transform steps, and each step's notes."""
        steps = [s for s in variant.steps if s.kind == "transform"]
        if not steps:
            return self.bundle(entry), []
        key = digest({"model": self.model_key(entry), "steps": [s.to_hashable() for s in steps]})
        if key in self._failed_transforms:
            raise self._failed_transforms[key]
        if key in self._transformed:
            return self._transformed[key]
        path = self.cache_dir / "transforms" / f"{key}.pt"
        notes_path = path.with_suffix(".json")
        if path.is_file() and notes_path.is_file() and not self._fresh_once(f"tf:{key}"):
            import torch

            module = torch.load(path, weights_only=False)
            saved = json.loads(notes_path.read_text())
            bundle = replace(self.bundle(entry), module=module, info=saved["info"])
            result = (bundle, saved["notes"])
        else:
            try:
                result = self._apply_transforms(entry, steps)
            except HarnessError as exc:
                self._failed_transforms[key] = exc
                raise
            except Exception as exc:  # a recipe's own failure: keep its message
                err = RecipeError(f"{type(exc).__name__}: {exc}")
                self._failed_transforms[key] = err
                raise err from exc
            self._save_transform(path, notes_path, *result)
        self._transformed[key] = result
        return result

    def _apply_transforms(
        self, entry: ModelEntry, steps: list[Any]
    ) -> tuple[ModelBundle, list[dict[str, Any]]]:
        bundle = self.bundle(entry)
        ctx = RecipeContext(seed=self.suite.measure.seed, cache_dir=self.cache_dir, log=self.log)
        notes: list[dict[str, Any]] = []
        for step in steps:
            recipe = step.instantiate()
            assert isinstance(recipe, TransformRecipe)
            started = time.perf_counter()
            outcome = recipe.apply(bundle, ctx)
            elapsed = time.perf_counter() - started
            self.log(f"{entry.name}: {step.recipe} done in {elapsed:.1f} s")
            bundle = outcome.bundle
            notes.append({"recipe": step.recipe, "seconds": round(elapsed, 2), **outcome.notes})
        return bundle, notes

    @staticmethod
    def _save_transform(
        path: Path, notes_path: Path, bundle: ModelBundle, notes: list[dict[str, Any]]
    ) -> None:
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(bundle.module, tmp)
        tmp.replace(path)
        atomic_write_json(notes_path, {"info": bundle.info, "notes": notes})

    # --- artifacts --------------------------------------------------------------

    def artifact(
        self, entry: ModelEntry, variant: Variant, runtime: str, target: TargetInfo
    ) -> Artifact:
        runtime_spec(runtime).check_quant_mode(quant_mode(variant))
        key = self.artifact_key(entry, variant, runtime, target)
        existing = self.artifacts.get(key)
        if entry.file is not None:
            # Content-addressed, so an existing copy is the same bytes (--fresh or not).
            return existing or self._store_ready_file(entry, key)
        if existing is not None and not self._fresh_once(f"art:{key}"):
            return existing
        from harness.export import get_exporter

        bundle, transform_notes = self.transformed(entry, variant)
        quant = _quant_request(variant)
        runtime = runtime_spec(runtime).builds_as
        exporter = get_exporter(runtime)
        staged = self.artifacts.staging_path(key, exporter.suffix)
        started = time.perf_counter()
        try:
            result = exporter.export(bundle, staged, quant, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        if result.path != staged:
            Path(result.path).replace(staged)
        elapsed = time.perf_counter() - started
        self.log(f"{entry.name}/{variant.name}: exported to {runtime} in {elapsed:.1f} s")
        return self.artifacts.commit(
            key,
            staged,
            exporter.suffix,
            {
                "model": entry.name,
                "variant": variant.name,
                "runtime": runtime,
                "target": target.to_dict(),
                "lineage": variant.lineage(),
                "transform_notes": transform_notes,
                "export_notes": result.notes,
                "model_info": bundle.info,
                "versions": library_versions(),
                "export_seconds": round(elapsed, 2),
            },
        )

    def _store_ready_file(self, entry: ModelEntry, key: str) -> Artifact:
        """A ready .onnx/.pte is measured from a copy in the artifact store, kept under
        its content key: the cell's artifact_hash then names bytes that stay there, for
        ``compare --interleave`` to measure again, whatever is done to the user's file."""
        path = self.suite.model_path(entry)
        external = _external_data_files(path)
        identity = self.model_identity(entry)

        def check(sha256: str) -> None:
            if _model_key({**identity, "file_sha256": sha256}) != key:
                raise ModelError(
                    f"{path}: the file changed while it was being read (models[].file "
                    f"{entry.name!r}); run again once it is written"
                )

        meta = {
            "model": entry.name,
            "source_file": str(path),
            "runtime": file_suffixes()[path.suffix.lower()],
            # Each input as the run fed it (the suite may give a one-input file's shape).
            "inputs": [spec.to_dict() for spec in self.model_data(entry).inputs],
            "input_shape": entry.input_shape,
            "external_data": external,
            "versions": library_versions(),
        }
        started = time.perf_counter()
        artifact = self.artifacts.store_copy(key, path, meta, external, check)
        elapsed = time.perf_counter() - started
        self.log(f"{entry.name}: {path.name} kept in the artifact store ({elapsed:.1f} s)")
        return artifact


def _model_key(identity: dict[str, Any]) -> str:
    return digest({"model": identity, "versions": library_versions()})


def _external_data_files(path: Path) -> list[str]:
    """The files an ONNX model keeps its tensors in (paths relative to the model), or
    [] for a .pte or an ONNX file that holds them all. A location that leaves the
    model's directory is refused, as onnxruntime refuses it."""
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return []
    stat = path.stat()
    return list(_external_data_of(str(path), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=64)
def _external_data_of(path_text: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """Parsed once per version of the file (identities are asked for several times a
    cell, and a large model takes a while to parse)."""
    path = Path(path_text)
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not an ONNX file: validate/measure name that, not the copy
        return []
    names = sorted(
        {
            ExternalDataInfo(tensor).location
            for tensor in _get_all_tensors(model)
            if uses_external_data(tensor)
        }
    )
    for name in names:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ModelError(
                f"{path}: external data {name!r} is not a path inside the model's directory"
            )
        if not (path.parent / relative).is_file():
            raise ModelError(f"{path}: its external data file {name!r} is missing")
    return tuple(names)


def quant_mode(variant: Variant) -> str | None:
    """The mode of the variant's quantize step ("static", "fp16", ...), None without one."""
    request = _quant_request(variant)
    return request.mode if request is not None else None


def _quant_request(variant: Variant) -> QuantRequest | None:
    for step in variant.steps:
        if step.kind == "quantize":
            recipe = step.instantiate()
            return recipe.request()  # type: ignore[attr-defined]
    return None


class _SysPath:
    """Temporarily put the suite's directory on sys.path for user factories."""

    def __init__(self, directory: Path):
        self.directory = str(directory)

    def __enter__(self) -> None:
        sys.path.insert(0, self.directory)

    def __exit__(self, *exc: object) -> None:
        if self.directory in sys.path:
            sys.path.remove(self.directory)
