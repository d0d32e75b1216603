"""Models for the runner benchmarks, built on the spot (no zoo, no training).

``mlp``: three dense layers, about 1 ms per inference on one core of the reference
machine. ``convnet``: four 3x3 convolutions on a 96x96 image, about 20 ms. Both are
exported to ONNX (``.onnx``) and to ExecuTorch with XNNPACK (``.pte``) with a static
batch of 1, as the harness's exporters do.
"""

from __future__ import annotations

from pathlib import Path

import torch

SIZES = {"mlp": "~1 ms", "convnet": "~20 ms"}


class Mlp(torch.nn.Module):
    def __init__(self, width: int = 1024):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(width, 2 * width),
            torch.nn.ReLU(),
            torch.nn.Linear(2 * width, 2 * width),
            torch.nn.ReLU(),
            torch.nn.Linear(2 * width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvNet(torch.nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        c = width
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, c, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(c, c, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(c, 2 * c, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(2 * c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model and an example input (batch 1)."""
    torch.manual_seed(0)
    if name == "mlp":
        return Mlp().eval(), torch.randn(1, 1024)
    if name == "convnet":
        return ConvNet().eval(), torch.randn(1, 3, 96, 96)
    raise ValueError(f"unknown model {name!r} (known: {', '.join(SIZES)})")


def export(name: str, runtime: str, directory: Path) -> tuple[Path, list[int]]:
    """Export ``name`` for ``runtime`` into ``directory``; return (artifact, input shape)."""
    model, x = build(name)
    directory.mkdir(parents=True, exist_ok=True)
    if runtime == "onnxruntime":
        path = directory / f"{name}.onnx"
        torch.onnx.export(model, (x,), str(path), input_names=["input"], dynamo=False)
    elif runtime == "executorch":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower

        path = directory / f"{name}.pte"
        program = torch.export.export(model, (x,))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        path.write_bytes(lowered.to_executorch().buffer)
    else:
        raise ValueError(f"unknown runtime {runtime!r}")
    return path, list(x.shape)
