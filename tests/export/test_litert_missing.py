"""Without the litert extra, LiteRT cells fail as unsupported with the install command
(every mode, before any step runs), and the runtime stays an optional one. Runs in the
base install, with litert-torch hidden where the extra is installed."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from harness.errors import UnsupportedError
from harness.export import get_exporter
from harness.export.registry import runtime_spec
from harness.models.base import ModelBundle, TaskData
from harness.recipes.base import QuantRequest
from harness.target import TargetInfo


@pytest.fixture
def bundle() -> ModelBundle:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = TaskData(
        calib_inputs=rng.standard_normal((8, 16), dtype=np.float32),
        eval_inputs=rng.standard_normal((4, 16), dtype=np.float32),
    )
    return ModelBundle(
        name="linear",
        module=torch.nn.Linear(16, 4).eval(),
        example_input=torch.from_numpy(data.eval_inputs[:1].copy()),
        data=data,
        identity={"n": 1},
    )


@pytest.mark.parametrize("quant", [None, QuantRequest(mode="static", calibration_samples=4)])
def test_without_litert_torch_the_export_says_how_to_install_it(
    bundle, quant, tmp_path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # an import of it fails
    out = tmp_path / "model.tflite"
    with pytest.raises(UnsupportedError, match=r"pip install -c constraints-litert\.txt"):
        get_exporter("litert").export(bundle, out, quant, TargetInfo(arch="x86_64"))
    assert not out.exists()


def test_litert_is_an_optional_runtime_with_its_own_install_hint() -> None:
    spec = runtime_spec("litert")
    assert spec.optional and spec.suffix == ".tflite" and spec.artifact_of is None
    assert spec.import_name == "ai_edge_litert.interpreter"
    assert spec.install_hint.startswith("pip install -c constraints-litert.txt -e '.[litert]'")
    assert "pip install ai-edge-litert" in spec.install_hint
    assert spec.quant_modes == ("static", "dynamic")
