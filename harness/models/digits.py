"""The one real data set available offline: scikit-learn's bundled 8x8 digits.

The split is fixed by ``seed`` (stratified, 20% held out) so every model, recipe and
variant is scored on the same test images; calibration images are drawn from the train
split only, so quantization calibration never sees what accuracy is measured on.
Nothing is cached here: scikit-learn ships the data and loading it takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CALIB_SIZE",
    "DigitsSplit",
    "as_flat",
    "as_images",
    "as_sequence",
    "as_upsampled",
    "load_digits_split",
]

TEST_FRACTION = 0.2
CALIB_SIZE = 256


@dataclass(frozen=True)
class DigitsSplit:
    """Flat (N, 64) float32 pixels in [0, 1] and int64 labels, plus the indices used.

    ``*_idx`` index the original ``load_digits()`` order so tests (and users) can check
    the split is fixed and that calibration is a subset of train.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    calib_x: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    calib_idx: np.ndarray


def load_digits_split(seed: int = 0, calib_size: int = CALIB_SIZE) -> DigitsSplit:
    """Stratified train/test split of the digits (pixels / 16) and a calibration subset.

    sklearn is imported here, not at module import, to keep ``import harness.models``
    light.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data.astype(np.float32) / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_FRACTION, stratify=y, random_state=seed, shuffle=True
    )
    train_idx = np.sort(train_idx)
    test_idx = np.sort(test_idx)
    rng = np.random.default_rng(seed)
    n_calib = min(calib_size, len(train_idx))
    calib_idx = np.sort(rng.choice(train_idx, size=n_calib, replace=False))
    return DigitsSplit(
        train_x=x[train_idx],
        train_y=y[train_idx],
        test_x=x[test_idx],
        test_y=y[test_idx],
        calib_x=x[calib_idx],
        train_idx=train_idx,
        test_idx=test_idx,
        calib_idx=calib_idx,
    )


def as_flat(x: np.ndarray) -> np.ndarray:
    """(N, 64) float32: the MLP's input."""
    return np.ascontiguousarray(x.reshape(len(x), 64), dtype=np.float32)


def as_images(x: np.ndarray) -> np.ndarray:
    """(N, 1, 8, 8) float32: the CNN's input."""
    return np.ascontiguousarray(x.reshape(len(x), 1, 8, 8), dtype=np.float32)


def as_sequence(x: np.ndarray) -> np.ndarray:
    """(N, 8, 8) float32: 8 tokens (image rows) of 8 features, the transformer's input."""
    return np.ascontiguousarray(x.reshape(len(x), 8, 8), dtype=np.float32)


def as_upsampled(x: np.ndarray, size: int, channels: int = 3, batch_size: int = 512) -> np.ndarray:
    """(N, channels, size, size) float32: bilinear upsampling, the gray plane repeated.

    Lets ImageNet-style networks (which downsample 32x) run on real digits; processed in
    batches so a large ``size`` does not need a second full-size temporary.
    """
    imgs = as_images(x)
    out = np.empty((len(imgs), channels, size, size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(imgs), batch_size):
            chunk = torch.from_numpy(imgs[start : start + batch_size])
            up = torch.nn.functional.interpolate(
                chunk, size=(size, size), mode="bilinear", align_corners=False
            )
            out[start : start + len(chunk)] = up.expand(-1, channels, -1, -1).numpy()
    return out
