"""A random-weight MLP whose output bias outweighs everything its input does: its fp32
outputs pick class 0 on every input, so top-1 agreement is 100% for any variant that
keeps the bias, however far its outputs moved. The fidelity tests use it to show that
SNR and cosine still tell the variants apart and that the report flags the baseline."""

from __future__ import annotations

import torch
from torch import nn


class BiasedMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, 8)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[0] = 8.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def make() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return BiasedMlp().eval(), torch.randn(1, 32)
