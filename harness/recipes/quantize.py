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


class Int8Static(QuantizeRecipe[Int8StaticParams]):
    name = "int8-static"
    Params: ClassVar = Int8StaticParams

    def request(self) -> QuantRequest:
        p = self.params
        return QuantRequest(
            mode="static",
            per_channel=p.per_channel,
            calibration_samples=p.calibration_samples,
            activation_dtype=p.activation_dtype,
        )


class Int8DynamicParams(RecipeParams):
    per_channel: bool = True


class Int8Dynamic(QuantizeRecipe[Int8DynamicParams]):
    name = "int8-dynamic"
    Params: ClassVar = Int8DynamicParams

    def request(self) -> QuantRequest:
        return QuantRequest(mode="dynamic", per_channel=self.params.per_channel)


class Fp16Params(RecipeParams):
    pass


class Fp16(QuantizeRecipe[Fp16Params]):
    name = "fp16"
    Params: ClassVar = Fp16Params

    def request(self) -> QuantRequest:
        return QuantRequest(mode="fp16")


class Bf16Params(RecipeParams):
    pass


class Bf16(QuantizeRecipe[Bf16Params]):
    """bf16 inference: the artifact stays fp32 and a runtime that can (OpenVINO on a CPU
    with bf16 arithmetic) runs it in bf16; the others refuse the variant."""

    name = "bf16"
    Params: ClassVar = Bf16Params

    def request(self) -> QuantRequest:
        return QuantRequest(mode="bf16")


class Int8QatParams(RecipeParams):
    epochs: int = Field(2, ge=1, le=1000, description="QAT fine-tuning epochs (fake-quant)")
    lr: float = Field(1e-4, gt=0, le=1, description="QAT learning rate (Adam, cosine decay)")
    calibration_samples: int = Field(
        128,
        ge=1,
        le=100_000,
        description="calibration inputs run through the fake-quant model before training, "
        "so the first steps start from measured activation ranges",
    )
    per_channel: bool = True


class Int8Qat(QuantizeRecipe[Int8QatParams]):
    """int8 with quantization-aware training: fine-tune under fake quantization (pt2e),
    so the weights adapt to the int8 grid the runtime will use, then quantize.

    Worth it where post-training int8 loses accuracy; it costs a short training run per
    runtime at export time (each runtime's exporter trains against its own format).
    """

    name = "int8-qat"
    Params: ClassVar = Int8QatParams

    def request(self) -> QuantRequest:
        p = self.params
        return QuantRequest(
            mode="qat",
            per_channel=p.per_channel,
            calibration_samples=p.calibration_samples,
            qat_epochs=p.epochs,
            qat_lr=p.lr,
        )
