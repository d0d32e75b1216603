"""A model with two inputs given as a dict: a small image (float) and a category id
(int64) whose embedding is added to the image features before the classifier.

Random weights (seeded); called as ``model(image=..., category=...)``.
"""

from __future__ import annotations

import torch
from torch import nn

CATEGORIES = 5
CLASSES = 4


class ImageAndCategory(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.category = nn.Embedding(CATEGORIES, 16)
        self.head = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, CLASSES))

    def forward(self, image: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(image) + self.category(category))


def make() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    example = {"image": torch.randn(1, 1, 8, 8), "category": torch.tensor([2])}
    return ImageAndCategory().eval(), example
