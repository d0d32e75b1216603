"""Quantize recipes: they only describe the request; each exporter carries it out."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from harness.recipes.base import QuantizeRecipe, QuantRequest, RecipeParams


class Int8StaticParams(RecipeParams):
    calibration_samples: int = Field(128, ge=1, le=100_000)
    per_channel: bool = True
    # "auto" picks the format that is fast on the target CPU (U8S8 QDQ on x86 with VNNI,
    # S8S8 on ARM); forcing one is for experiments.
    activation_dtype: Literal["auto", "uint8", "int8"] = "auto"


class Int8Static(QuantizeRecipe):
    name = "int8-static"
    Params: ClassVar = Int8StaticParams

    def request(self) -> QuantRequest:
        p: Int8StaticParams = self.params  # type: ignore[assignment]
        return QuantRequest(
            mode="static",
            per_channel=p.per_channel,
            calibration_samples=p.calibration_samples,
            activation_dtype=p.activation_dtype,
        )


class Int8DynamicParams(RecipeParams):
    per_channel: bool = True


class Int8Dynamic(QuantizeRecipe):
    name = "int8-dynamic"
    Params: ClassVar = Int8DynamicParams

    def request(self) -> QuantRequest:
        return QuantRequest(mode="dynamic", per_channel=self.params.per_channel)  # type: ignore[attr-defined]


class Fp16Params(RecipeParams):
    pass


class Fp16(QuantizeRecipe):
    name = "fp16"
    Params: ClassVar = Fp16Params

    def request(self) -> QuantRequest:
        return QuantRequest(mode="fp16")
