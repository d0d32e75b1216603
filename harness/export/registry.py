"""The runtimes the harness knows, by name: what the rest of the package asks about one.

A runtime is an exporter module (``export/<name>.py``, resolved only when an artifact is
built) and a session class in the runner (``bench_runner.SESSIONS``). What suite
validation, artifact keys, ``devices check`` and reading a ready model file need to know
about it is data here, so asking costs nothing: importing an exporter imports torch
(about 3 s), which ``harness validate`` or ``devices check`` should not pay.
:func:`register_runtime` adds one (a plugin module, or a test's toy runtime).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.plugins import resolve, suggest

if TYPE_CHECKING:
    from harness.export.base import Exporter
    from harness.models.inputs import InputSpec

# Libraries every artifact key holds the versions of (harness.artifacts.library_versions);
# a runtime's own packages outside this set are added to its cells' keys only.
SHARED_VERSIONED_PACKAGES = (
    "torch",
    "onnxruntime",
    "onnx",
    "onnxscript",
    "executorch",
    "torchao",
    "torch-pruning",
    "numpy",
    "scikit-learn",
)


@dataclass(frozen=True)
class RuntimeSpec:
    """One runtime as the host sees it."""

    name: str
    # "package.module:Class" of its Exporter, resolved when an artifact is built; None
    # for a runtime that measures another's artifact (``artifact_of``).
    exporter: str | None
    # The artifact file's suffix; a ready model file with it runs on this runtime.
    suffix: str
    # What the runner imports to run it (the probe imports the same).
    import_name: str
    # Distributions whose versions key its artifacts and that `devices check` reports.
    packages: tuple[str, ...]
    install_hint: str
    # "package.module:function" reading a ready file's inputs: f(path) -> specs, or None
    # when they cannot be read here (the suite must then give input_shape).
    file_reader: str | None = None
    # Measures the artifact another runtime builds (OpenVINO reads the ONNX file), so
    # the two share one artifact; ready files of that runtime's suffix run on it too.
    artifact_of: str | None = None
    # What to call the file format in messages ("ONNX model").
    file_kind: str = ""
    # The job's runtime_options for its session, by the variant's quantize mode
    # ("default" for the rest): OpenVINO pins its inference precision to f32 unless a
    # bf16 variant asks for bf16.
    options_by_mode: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Quantize modes of harness.recipes.base.QuantRequest whose artifact it runs as
    # asked; a variant in another mode fails its cell as unsupported.
    quant_modes: tuple[str, ...] = ("static", "dynamic", "qat", "fp16")
    # Installed by an extra, not by the base install: `devices check` mentions its
    # absence without a warning unless the suite uses it.
    optional: bool = False

    @property
    def builds_as(self) -> str:
        """The runtime whose exporter makes this runtime's artifact."""
        return self.artifact_of or self.name

    def exporter_class(self) -> type[Exporter]:
        builder = runtime_spec(self.builds_as)
        if builder.exporter is None:
            raise UnknownRuntimeError(f"runtime {builder.name!r} names no exporter")
        return resolve(builder.exporter)

    def check_quant_mode(self, quant_mode: str | None) -> None:
        """Raise UnsupportedError when this runtime cannot run a variant of ``quant_mode``."""
        if quant_mode is None or quant_mode in self.quant_modes:
            return
        from harness.errors import UnsupportedError

        able = [s.name for s in RUNTIMES.values() if quant_mode in s.quant_modes]
        raise UnsupportedError(
            f"{self.name} does not run {quant_mode} variants"
            + (f" (runtimes that do: {', '.join(able)})" if able else "")
        )

    def runtime_options(self, quant_mode: str | None) -> dict[str, Any]:
        """The session settings for a variant quantized in ``quant_mode`` (None: not)."""
        chosen = self.options_by_mode.get(quant_mode or "", self.options_by_mode.get("default"))
        return dict(chosen or {})

    def versions(self) -> dict[str, str]:
        """Installed versions of its packages ("absent" when not installed)."""
        out = {}
        for package in self.packages:
            try:
                out[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                out[package] = "absent"
        return out

    def own_versions(self) -> dict[str, str]:
        """Versions of its packages that the shared version table does not hold."""
        return {k: v for k, v in self.versions().items() if k not in SHARED_VERSIONED_PACKAGES}

    def read_file_inputs(self, path: Path) -> tuple[InputSpec, ...] | None:
        if self.file_reader is None:
            return None
        reader: Callable[[Path], Any] = resolve(self.file_reader)
        return reader(path)


RUNTIMES: dict[str, RuntimeSpec] = {}


def register_runtime(spec: RuntimeSpec) -> RuntimeSpec:
    """Add (or replace) a runtime; returns it."""
    RUNTIMES[spec.name] = spec
    return spec


def unregister_runtime(name: str) -> None:
    RUNTIMES.pop(name, None)


class UnknownRuntimeError(HarnessError):
    pass


def runtime_spec(name: str) -> RuntimeSpec:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise UnknownRuntimeError(f"runtime {name!r}: {suggest(name, RUNTIMES)}") from None


def runtime_names() -> list[str]:
    return list(RUNTIMES)


def file_suffixes() -> dict[str, str]:
    """Ready-file suffix -> the runtime that owns it (".onnx" -> "onnxruntime")."""
    return {spec.suffix: spec.name for spec in RUNTIMES.values() if spec.artifact_of is None}


def runtimes_for_file(path: Path | str) -> list[str]:
    """Every runtime that can measure a ready file like ``path``: its suffix's owner and
    the runtimes that measure the owner's artifacts."""
    owner = file_suffixes().get(Path(path).suffix.lower())
    if owner is None:
        return []
    return [s.name for s in RUNTIMES.values() if s.builds_as == owner]


def suffix_list() -> str:
    """``".onnx or .pte"``: the ready-file suffixes, for messages."""
    suffixes = list(file_suffixes())
    return ", ".join(suffixes[:-1]) + (" or " if len(suffixes) > 1 else "") + suffixes[-1]


register_runtime(
    RuntimeSpec(
        name="onnxruntime",
        exporter="harness.export.onnx:OnnxExporter",
        suffix=".onnx",
        import_name="onnxruntime",
        packages=("onnxruntime",),
        install_hint="pip install onnxruntime",
        file_reader="harness.models.loaders:onnx_file_inputs",
        file_kind="ONNX file",
    )
)
register_runtime(
    RuntimeSpec(
        name="executorch",
        exporter="harness.export.executorch:ExecuTorchExporter",
        suffix=".pte",
        import_name="executorch.runtime",
        packages=("executorch",),
        install_hint="pip install executorch (the runner uses executorch.runtime)",
        file_reader="harness.models.loaders:pte_file_inputs",
        file_kind="ExecuTorch program",
    )
)
register_runtime(
    RuntimeSpec(
        name="openvino",
        exporter=None,
        suffix=".onnx",
        import_name="openvino",
        packages=("openvino",),
        install_hint="pip install openvino (in a checkout: pip install -e '.[openvino]')",
        artifact_of="onnxruntime",
        file_kind="ONNX file",
        options_by_mode={
            "default": {"inference_precision": "f32"},
            "bf16": {"inference_precision": "bf16"},
        },
        quant_modes=("static", "dynamic", "qat", "fp16", "bf16"),
        optional=True,
    )
)
register_runtime(
    RuntimeSpec(
        name="litert",
        exporter="harness.export.litert:LiteRtExporter",
        suffix=".tflite",
        import_name="ai_edge_litert.interpreter",
        # litert-torch writes the file, so its version keys the artifact too.
        packages=("ai-edge-litert", "litert-torch"),
        install_hint=(
            "pip install -c constraints-litert.txt -e '.[litert]' (about 0.9 GB; on a "
            "board: pip install ai-edge-litert)"
        ),
        file_reader="harness.models.loaders:tflite_file_inputs",
        file_kind="LiteRT model",
        # pt2e int8 with calibration, and dynamic-range int8 (int8 weights); fp16/bf16
        # and QAT are not built for LiteRT.
        quant_modes=("static", "dynamic"),
        optional=True,
    )
)
