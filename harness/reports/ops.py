"""Per-op profiles compared across runtimes: where the time of one variant goes on each.

Each runtime names its ops its own way (onnxruntime's ``QLinearConv``, XNNPACK's
``Convolution (NHWC, F32) IGEMM``, OpenVINO's ``Convolution`` node type, ExecuTorch's
portable ``convolution.out``), so a comparison maps them to shared categories
(:func:`op_category`) and keeps the raw names beside them. Only cells measured with
``[measure] profile = true`` have profiles, and a profile lists only its ``profile.top``
slowest ops (10 by default): what the listed ops leave of ``ops_total_ms`` is shown as
its own row, "(not in the top N)", rather than spread over the categories.

A quantized compute op (``QLinearConv``, XNNPACK's ``Convolution (NHWC, QD8, ...)``) is
counted with its compute category (conv, matmul, ...): "quantize" holds only the
conversions between integer and float tensors, so that a runtime that spends its time
converting shows it there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.reports.text import fmt_number, md_table
from harness.results.store import CellRecord

CATEGORIES = (
    "conv",
    "matmul",
    "pool",
    "activation",
    "elementwise",
    "normalization",
    "layout",
    "quantize",
    "other",
)
TOP_OPS = 3  # raw op names shown per category and runtime
MS_FORMAT = ".3g"  # significant digits: a small model's ops take microseconds

_Table = tuple[tuple[str, str], ...]  # (category, regex), first match wins

# onnxruntime: ONNX op types and the contrib ops its graph optimizer fuses them into
# (FusedConv, NhwcMaxPool, the NCHWc ReorderInput/ReorderOutput, QGemm).
_ONNXRUNTIME: _Table = (
    ("quantize", r"^(Dynamic)?(Quantize|Dequantize)Linear$"),
    ("conv", r"Conv"),
    ("matmul", r"Gemm|MatMul|Attention"),
    ("pool", r"Pool|^Reduce(Mean|Max)$"),
    ("normalization", r"Norm"),
    (
        "activation",
        r"^(QLinear)?(Relu|LeakyRelu|PRelu|Sigmoid|HardSigmoid|Tanh|Clip|Gelu|FastGelu|BiasGelu|"
        r"HardSwish|Softmax|LogSoftmax|Elu|Selu|Softplus|Mish|QuickGelu)$",
    ),
    (
        "elementwise",
        r"^(QLinear)?(Add|Sub|Mul|Div|Pow|Sqrt|Exp|Log|Erf|Neg|Abs|Sum|Min|Max|Mean|"
        r"Reciprocal|Where|Equal|Less|Greater|Not|And|Or|BiasAdd)$",
    ),
    (
        "layout",
        r"^(QLinear)?(Transpose|Reshape|Flatten|Squeeze|Unsqueeze|Concat|Split|Slice|Gather|"
        r"Expand|Pad|Identity|Tile|Shape|DepthToSpace|SpaceToDepth|ReorderInput|"
        r"ReorderOutput|Resize|Upsample)$",
    ),
)

# XNNPACK's operator names inside ExecuTorch's delegate ("Fully Connected (NC, QD8, F32,
# QC8W) GEMM"), then the portable and optimized kernels outside it ("convolution.out",
# "aten.view_copy.default", "quantized_decomposed.quantize_per_tensor.out").
_EXECUTORCH: _Table = (
    ("quantize", r"^Convert \(|quantize_per|dequantize_per|choose_qparams|quantized_decomposed"),
    ("conv", r"^(Deconvolution|Convolution)\b|convolution"),
    ("matmul", r"^(Dynamic )?Fully Connected|Matrix Multiply|addmm|\bmm\b|bmm|linear|matmul"),
    ("pool", r"Pooling|^Mean \(|max_pool|avg_pool|\bmean\b"),
    ("normalization", r"batch_norm|layer_norm|group_norm|Normalization"),
    (
        "activation",
        r"^(Clamp|Sigmoid|Tanh|HardSwish|GELU|ELU|Leaky ReLU|Softmax)\b|"
        r"\b_?(relu|hardtanh|sigmoid|tanh|gelu|silu|hardswish|_softmax|softmax|clamp)\b",
    ),
    (
        "elementwise",
        r"^(Add|Subtract|Multiply|Divide|Maximum|Minimum|Negate|Abs|Square|Square Root|Exp|"
        r"Log)\b|"
        r"\b(add|sub|mul|div|rsqrt|sqrt|exp|pow|neg|abs|where|minimum|maximum)\b",
    ),
    (
        "layout",
        r"^(Transpose|Copy|Static Reshape|Static Slice|Constant Pad|Concatenate|Depth To Space|"
        r"Space To Depth|Even Split|Static Constant Pad|Resize)\b|"
        r"view_copy|permute|transpose|reshape|expand_copy|\bcat\b|slice_copy|select_copy|"
        r"squeeze|unsqueeze|clone|flatten|constant_pad|\bpad\b|_to_copy|split",
    ),
)

# OpenVINO CPU plugin node types: "FullyConnectedQuantizedLegacy", "Reorder" (memory
# format conversions), "Subgraph" (a Snippets kernel: fused elementwise ops), "Eltwise".
_OPENVINO: _Table = (
    ("quantize", r"FakeQuantize|^(De)?Quantize|Convert"),
    ("conv", r"Convolution|Deconvolution"),
    ("matmul", r"FullyConnected|MatMul|Gemm"),
    ("pool", r"Pool|^ReduceMean$|^ReduceMax$|^Reduce$"),
    ("normalization", r"MVN|Normalize|BatchNorm|LayerNorm|RMS"),
    (
        "activation",
        r"^(Relu|Sigmoid|Tanh|Clamp|Gelu|Swish|HSwish|HSigmoid|Elu|Mish|SoftMax|Softmax)$",
    ),
    ("elementwise", r"^(Eltwise|Subgraph|Add|Multiply|Subtract|Divide|Power|Sqrt|Exp)$"),
    (
        "layout",
        r"^(Reorder|Reshape|Transpose|Concatenation|Concat|Split|VariadicSplit|StridedSlice|"
        r"Gather|Broadcast|Pad|Squeeze|Unsqueeze|Flatten|DepthToSpace|SpaceToDepth|"
        r"ShuffleChannels|Interpolate)$",
    ),
)

# TFLite builtin op names (LiteRT) and anything else: upper-snake or CamelCase, matched
# without case.
_GENERIC: _Table = (
    ("quantize", r"^(de)?quantize|fakequant|quantizelinear"),
    ("conv", r"conv(?!ert)"),
    ("matmul", r"fully_?connected|matmul|gemm|batch_matmul|\blinear\b|addmm"),
    ("pool", r"pool|^mean$|reduce_?mean"),
    ("normalization", r"norm"),
    (
        "activation",
        r"relu|logistic|sigmoid|tanh|gelu|swish|softmax|hard_?swish|clamp|clip|prelu|elu\b",
    ),
    ("elementwise", r"^(add|sub|mul|div|pow|sqrt|rsqrt|exp|log|abs|neg|maximum|minimum)\b"),
    (
        "layout",
        r"reshape|transpose|permute|concat|split|slice|gather|squeeze|pad|flatten|reorder|"
        r"view|depth_?to_?space|space_?to_?depth|resize|copy",
    ),
)

_TABLES: dict[str, _Table] = {
    "onnxruntime": _ONNXRUNTIME,
    "executorch": _EXECUTORCH,
    "openvino": _OPENVINO,
}
_COMPILED: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    name: tuple((category, re.compile(pattern)) for category, pattern in table)
    for name, table in _TABLES.items()
}
_COMPILED_GENERIC = tuple(
    (category, re.compile(pattern, re.IGNORECASE)) for category, pattern in _GENERIC
)


def op_category(runtime: str, op_name: str) -> str:
    """The shared category (one of :data:`CATEGORIES`) of a profiled op of ``runtime``;
    ``other`` when no pattern of that runtime knows it (ExecuTorch's ``DELEGATE_CALL``,
    OpenVINO's ``Parameter``). Runtimes without a table of their own (LiteRT) use a
    generic one that ignores case."""
    name = op_name.removeprefix("native_call_")
    for category, pattern in _COMPILED.get(runtime, _COMPILED_GENERIC):
        if pattern.search(name):
            return category
    return "other"


@dataclass(frozen=True)
class RuntimeOps:
    """One runtime's time in one category, per inference: ``ms`` (sum of the ops'
    ``total_ms``), ``share`` of the profile's ``ops_total_ms``, and its slowest raw ops
    as (name, ms)."""

    ms: float
    share: float
    ops: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ms": self.ms,
            "share": self.share,
            "ops": [{"op": op, "total_ms": ms} for op, ms in self.ops],
        }


@dataclass(frozen=True)
class RuntimeProfile:
    """What one runtime's profile says as a whole: the tool, the runs it averaged, the
    time of every op (``ops_total_ms``), how many ops it listed of how many kinds."""

    runtime: str
    tool: str
    runs: int | None
    ops_total_ms: float
    listed: int
    op_kinds: int | None
    listed_ms: float

    @property
    def not_listed_ms(self) -> float:
        """What the ops below the top N took (0 when the profile listed every op)."""
        left = self.ops_total_ms - self.listed_ms
        # The listed ops' sum differs from the total by float rounding when nothing is left.
        return left if left > 1e-9 * self.ops_total_ms else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "tool": self.tool,
            "runs": self.runs,
            "ops_total_ms": self.ops_total_ms,
            "listed": self.listed,
            "op_kinds": self.op_kinds,
            "not_listed_ms": self.not_listed_ms,
        }


@dataclass(frozen=True)
class CategoryRow:
    """One category across the runtimes; a runtime without ops in it is absent."""

    category: str
    by_runtime: dict[str, RuntimeOps]

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "runtimes": {r: ops.to_dict() for r, ops in self.by_runtime.items()},
        }


@dataclass(frozen=True)
class OpComparison:
    """The profiles of one (model, variant, device) on two or more runtimes, by category
    (in :data:`CATEGORIES` order, only those some runtime has)."""

    model: str
    variant: str
    device: str
    profiles: tuple[RuntimeProfile, ...]
    rows: tuple[CategoryRow, ...]

    @property
    def runtimes(self) -> tuple[str, ...]:
        return tuple(p.runtime for p in self.profiles)

    @property
    def top(self) -> int:
        """The N of "(not in the top N)": the most ops any of the profiles listed."""
        return max((p.listed for p in self.profiles), default=0)

    @property
    def title(self) -> str:
        return f"{self.model} {self.variant} on {self.device}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "device": self.device,
            "profiles": [p.to_dict() for p in self.profiles],
            "categories": [row.to_dict() for row in self.rows],
        }


def _profile_ops(cell: CellRecord) -> list[dict[str, Any]]:
    if cell.status != "ok":
        return []
    profile = cell.result.get("profile")
    if not isinstance(profile, dict):
        return []
    return [op for op in profile.get("ops") or [] if isinstance(op, dict) and "op" in op]


def _compare(key: tuple[str, str, str], cells: list[CellRecord]) -> OpComparison:
    profiles = []
    sums: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for cell in cells:
        profile = cell.result["profile"]
        ops = _profile_ops(cell)
        listed_ms = sum(float(op.get("total_ms") or 0.0) for op in ops)
        total = profile.get("ops_total_ms")
        total_ms = float(total) if total is not None else listed_ms
        profiles.append(
            RuntimeProfile(
                runtime=cell.runtime,
                tool=str(profile.get("tool") or "-"),
                runs=profile.get("runs"),
                ops_total_ms=total_ms,
                listed=len(ops),
                op_kinds=profile.get("op_kinds"),
                listed_ms=listed_ms,
            )
        )
        for op in ops:
            category = op_category(cell.runtime, str(op["op"]))
            per_runtime = sums.setdefault(category, {}).setdefault(cell.runtime, [])
            per_runtime.append((str(op["op"]), float(op.get("total_ms") or 0.0)))
    totals = {p.runtime: p.ops_total_ms for p in profiles}
    rows = []
    for category in CATEGORIES:
        if category not in sums:
            continue
        by_runtime = {}
        for runtime, ops in sums[category].items():
            ms = sum(t for _, t in ops)
            share = ms / totals[runtime] if totals[runtime] > 0 else 0.0
            ranked = sorted(ops, key=lambda o: -o[1])[:TOP_OPS]
            by_runtime[runtime] = RuntimeOps(ms, share, tuple(ranked))
        rows.append(CategoryRow(category, by_runtime))
    model, variant, device = key
    return OpComparison(model, variant, device, tuple(profiles), tuple(rows))


def op_comparison(cells: Iterable[CellRecord]) -> list[OpComparison]:
    """For each (model, variant, device) that two or more runtimes profiled (a measured
    cell whose profile lists ops), the comparison by category, in the order the run met
    them. A runtime with two such cells there counts its first."""
    groups: dict[tuple[str, str, str], dict[str, CellRecord]] = {}
    for cell in cells:
        if _profile_ops(cell):
            group = groups.setdefault((cell.model, cell.variant, cell.device), {})
            group.setdefault(cell.runtime, cell)
    return [
        _compare(key, list(by_runtime.values()))
        for key, by_runtime in groups.items()
        if len(by_runtime) >= 2
    ]


# --- rendering -------------------------------------------------------------------------

OPS_HEADING = "Per-op comparison across runtimes"


def ops_legend(comparisons: list[OpComparison]) -> str:
    """What the tables are, and that they list only each profile's slowest ops."""
    top = max((c.top for c in comparisons), default=0)
    return (
        "Per-op profiles (measure.profile = true) of the same variant on each runtime, "
        "grouped by what the ops do; ms is the time per inference the profiler gave the "
        "ops of a category, % its share of all the profiled op time, ops its slowest ops "
        "under the runtime's own names (ms). A quantized conv or matmul counts as conv or "
        "matmul; quantize holds only the int/float conversions. Each profile lists only "
        f"its slowest ops (profile.top, here up to {top}): the rest is the row "
        f'"(not in the top N)". Profiling overhead and timer resolution differ between '
        "runtimes (ExecuTorch's XNNPACK events count whole microseconds, so an op faster "
        "than that shows 0), so compare shares and orders of magnitude rather than exact ms."
    )


def _ops_text(ops: RuntimeOps | None) -> str:
    if ops is None:
        return "-"
    return ", ".join(f"{name} ({ms:.3g})" for name, ms in ops.ops)


def comparison_rows(comparison: OpComparison) -> tuple[list[str], list[list[str]]]:
    """The columns and rows of one comparison's table: a row per category, then what the
    top N leaves out, then all ops; per runtime its ms, % and raw ops."""
    columns = ["category"]
    for runtime in comparison.runtimes:
        columns += [f"{runtime} ms", f"{runtime} %", f"{runtime} ops"]
    rows = []
    for row in comparison.rows:
        values = [row.category]
        for runtime in comparison.runtimes:
            ops = row.by_runtime.get(runtime)
            values += [
                fmt_number(ops.ms if ops else None, MS_FORMAT),
                fmt_number(ops.share if ops else None, ".1f", 100),
                _ops_text(ops),
            ]
        rows.append(values)
    left_out = [f"(not in the top {comparison.top})"]
    everything = ["all ops"]
    for p in comparison.profiles:
        share = p.not_listed_ms / p.ops_total_ms if p.ops_total_ms > 0 else None
        more = p.op_kinds - p.listed if p.op_kinds is not None else None
        kinds = (
            "-"
            if more is None
            else "every op listed"
            if not more
            else f"{more} more op kind{'s' if more > 1 else ''}"
        )
        left_out += [fmt_number(p.not_listed_ms, MS_FORMAT), fmt_number(share, ".1f", 100), kinds]
        runs = f", {p.runs} runs" if p.runs is not None else ""
        everything += [fmt_number(p.ops_total_ms, MS_FORMAT), "100.0", f"{p.tool}{runs}"]
    rows += [left_out, everything]
    return columns, rows


def render_ops_markdown(comparisons: list[OpComparison]) -> str:
    """The section of ``harness report --format markdown`` (empty without comparisons)."""
    if not comparisons:
        return ""
    lines = [f"### {OPS_HEADING}", "", ops_legend(comparisons)]
    for comparison in comparisons:
        columns, rows = comparison_rows(comparison)
        lines += ["", f"#### {comparison.title}", ""]
        lines += md_table(columns, rows)
    return "\n".join(lines) + "\n"


def render_ops_rich(comparisons: list[OpComparison], console: Console) -> None:
    """The same tables in the terminal; nothing without comparisons."""
    if not comparisons:
        return
    console.print(OPS_HEADING, style="bold", markup=False, highlight=False)
    for comparison in comparisons:
        columns, rows = comparison_rows(comparison)
        table = Table(title=comparison.title, title_justify="left", title_style="bold")
        for column in columns:
            text = column == "category" or column.endswith(" ops")
            table.add_column(column, justify="left" if text else "right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(ops_legend(comparisons), style="dim", markup=False, highlight=False)


def ops_to_dicts(comparisons: list[OpComparison]) -> list[dict[str, Any]]:
    return [c.to_dict() for c in comparisons]
