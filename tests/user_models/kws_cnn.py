"""A keyword-spotting CNN on a 49x10 MFCC map (49 frames of 10 coefficients, the
DS-CNN input of the "Hello Edge" keyword-spotting models), 12 keywords.

It comes with its own labelled data (the factory's third value): synthetic MFCC maps
in which each keyword is a fixed spectro-temporal pattern plus noise, so the model can
be trained in about a second and its accuracy means something. Training happens in the
factory, seeded, on one thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

FRAMES, COEFFS, KEYWORDS = 49, 10, 12


class KwsCnn(nn.Module):
    def __init__(self, width: int = 24) -> None:
        super().__init__()

        def separable(channels: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            )

        self.features = nn.Sequential(
            nn.Conv2d(1, width, (10, 4), stride=(2, 2), padding=(5, 1), bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            separable(width),
            separable(width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(width, KEYWORDS)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(mfcc))


def synthetic_mfcc(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` maps (N, 1, 49, 10) float32 and their keyword ids: each keyword's fixed
    pattern, shifted in time by up to 4 frames, plus unit noise."""
    patterns = np.random.default_rng(1234).standard_normal((KEYWORDS, FRAMES, COEFFS))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, KEYWORDS, count)
    shifts = rng.integers(-4, 5, count)
    maps = np.stack([np.roll(patterns[k], s, axis=0) for k, s in zip(labels, shifts, strict=True)])
    maps = maps + rng.standard_normal(maps.shape)
    return maps[:, None].astype(np.float32), labels.astype(np.int64)


def make() -> tuple[nn.Module, torch.Tensor, dict[str, Any]]:
    train_x, train_y = synthetic_mfcc(768, seed=1)
    eval_x, eval_y = synthetic_mfcc(128, seed=2)
    calib_x, _ = synthetic_mfcc(128, seed=3)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = KwsCnn()
            opt = torch.optim.Adam(model.parameters(), lr=3e-3)
            x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
            model.train()
            for _ in range(20):
                for start in range(0, len(x), 64):
                    loss = nn.functional.cross_entropy(
                        model(x[start : start + 64]), y[start : start + 64]
                    )
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
    finally:
        torch.set_num_threads(old_threads)
    data = {
        "eval_inputs": eval_x,
        "eval_labels": eval_y,
        "calib_inputs": calib_x,
        "train_inputs": train_x,
        "train_labels": train_y,
    }
    return model.eval(), torch.from_numpy(eval_x[:1]), data
