"""The arithmetic precision an artifact runs in: fp32, int8 or fp16.

An emulated board's speed differs per precision (a Cortex-A72 has no int8 dot product,
so x86's VNNI int8 speed-up does not carry over to it), so the emulated device needs to
know which one a variant is. What the exporter actually wrote (its ``quant_format``
note, the format it chose for the target) decides; the variant's quantize step (what
was asked) is the fallback; a model file with neither is not known (None).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("fp32", "int8", "fp16", "bf16")

# "QDQ U8S8 per-channel", "dynamic int8 (...)", "XNNPACK pt2e int8 symmetric ...",
# "QAT QDQ S8S8 ...": each names int8 or an 8-bit activation/weight pair.
_INT8 = re.compile(r"int8|\b[US]8S8\b", re.IGNORECASE)
# The quantize modes of harness.recipes.base.QuantRequest, by what they run in.
_MODE_PRECISION = {
    "static": "int8",
    "dynamic": "int8",
    "qat": "int8",
    "fp16": "fp16",
    "bf16": "bf16",
}


@dataclass(frozen=True)
class Precision:
    """A variant's precision (None: not known) and how it was found."""

    name: str | None
    found_from: str

    def to_job(self) -> dict[str, Any]:
        return {"name": self.name, "from": self.found_from}


def precision_of(export_notes: Mapping[str, Any] | None, quant_mode: str | None) -> Precision:
    """The precision from the exporter's notes, else from the quantize step's mode."""
    fmt = (export_notes or {}).get("quant_format")
    if isinstance(fmt, str) and fmt:
        if _INT8.search(fmt):
            return Precision("int8", f"export notes: {fmt}")
        if fmt.lower().startswith("fp16"):
            return Precision("fp16", f"export notes: {fmt}")
        if fmt.lower().startswith("bf16"):
            return Precision("bf16", f"export notes: {fmt}")
        if fmt.lower() == "fp32":
            return Precision("fp32", "export notes: fp32")
    if quant_mode is not None:
        name = _MODE_PRECISION.get(quant_mode)
        if name is not None:
            return Precision(name, f"the variant's quantize step (mode {quant_mode!r})")
    if isinstance(fmt, str) and fmt:
        return Precision(None, f"export notes name a format of no known precision: {fmt}")
    return Precision(None, "not known: no export notes and no quantize step (a model file)")
