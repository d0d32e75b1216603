"""The zoo's network definitions, written out in plain ``torch.nn``.

Nothing here trains or downloads: these are the untrained modules the zoo builds,
caches and hands to recipes (distillation builds its students from them). The two
reference architectures (MobileNetV2, ResNet-18) follow torchvision's layouts, because
torchvision is not available here and the benchmark numbers should be comparable to the
familiar networks, only scaled by ``width_mult`` and fed smaller inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harness.models.inputs import example_args

__all__ = [
    "DigitsCNN",
    "DigitsMLP",
    "DigitsTransformer",
    "MobileNetV2",
    "ResNet18",
    "count_macs",
    "count_params",
    "kaiming_init",
    "make_divisible",
    "model_stats",
]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` (as MobileNet does).

    SIMD kernels on edge CPUs work on 4/8/16 lanes; channel counts that are a multiple of
    8 avoid remainder loops, and rounding never drops more than 10% of the channels.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def kaiming_init(module: nn.Module) -> None:
    """torchvision's initialisation: Kaiming (fan_out) convs, unit BN, small linears.

    Used for the random-weight mode too, so activations keep a sane scale through the
    whole depth and a 'random' model is not degenerate (e.g. constant outputs).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- digits nets


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DigitsCNN(nn.Module):
    """Three conv-BN-ReLU stages on 1x8x8 digits, global average pool, linear head.

    Global pooling (instead of flattening a feature map) keeps the head tiny and makes
    the parameter count scale with ``width**2``, so a student at half the width has about
    a quarter of the parameters.
    """

    def __init__(self, width: int = 16, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, w),  # 8x8
            _conv_bn_relu(w, 2 * w),  # 8x8
            nn.MaxPool2d(2),  # 4x4
            _conv_bn_relu(2 * w, 4 * w),  # 4x4
            nn.MaxPool2d(2),  # 2x2
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class DigitsMLP(nn.Module):
    """Flat 64-pixel input, ReLU hidden layers, linear head."""

    def __init__(
        self, hidden: Sequence[int] = (128, 64), num_classes: int = 10, in_features: int = 64
    ):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_features
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(inplace=True)]
            prev = h
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(torch.flatten(x, 1)))


class DigitsTransformer(nn.Module):
    """Each image row is a token: 8 tokens x 8 features -> embed -> encoder -> mean pool.

    ``enable_nested_tensor=False`` and ``batch_first=True`` keep the module on the plain
    op path that ``torch.export`` (and hence ONNX/ExecuTorch) can trace; dropout is 0 so
    training is reproducible from the seed alone and export sees no dropout ops.
    """

    def __init__(
        self,
        d_model: int = 32,
        heads: int = 4,
        layers: int = 2,
        ff: int = 64,
        tokens: int = 8,
        token_features: int = 8,
        num_classes: int = 10,
    ):
        super().__init__()
        self.embed = nn.Linear(token_features, d_model)
        self.pos = nn.Parameter(torch.zeros(1, tokens, d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=ff, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x) + self.pos
        x = self.encoder(x)
        return self.classifier(self.norm(x.mean(dim=1)))


# ---------------------------------------------------------------------------- MobileNetV2


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ skip)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [
                nn.Conv2d(inp, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 layout (t, c, n, s table, 1280-wide last conv)."""

    SETTINGS = (
        # t, c, n, s
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(
        self,
        num_classes: int = 10,
        width_mult: float = 1.0,
        in_channels: int = 3,
        round_nearest: int = 8,
        dropout: float = 0.2,
    ):
        super().__init__()
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, input_channel, 3, 2, 1, bias=False),
                nn.BatchNorm2d(input_channel),
                nn.ReLU6(inplace=True),
            )
        ]
        for t, c, n, s in self.SETTINGS:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(
                    InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t)
                )
                input_channel = output_channel
        features.append(
            nn.Sequential(
                nn.Conv2d(input_channel, self.last_channel, 1, bias=False),
                nn.BatchNorm2d(self.last_channel),
                nn.ReLU6(inplace=True),
            )
        )
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ------------------------------------------------------------------------------ ResNet-18


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 strided projection) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's ResNet-18: 7x7/2 stem, max pool, four stages of two BasicBlocks.

    Stage widths 64/128/256/512 are multiplied by ``width_mult`` and rounded to multiples
    of 8 (torchvision has no width multiplier; rounding like MobileNet keeps the scaled
    variants SIMD-friendly).
    """

    def __init__(self, num_classes: int = 10, width_mult: float = 1.0, in_channels: int = 3):
        super().__init__()
        widths = [make_divisible(c * width_mult) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(widths[0], 1)
        self.layer2 = self._make_layer(widths[1], 2)
        self.layer3 = self._make_layer(widths[2], 2)
        self.layer4 = self._make_layer(widths[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        kaiming_init(self)
        # torchvision keeps nn.Linear's default init for the head; only convs/BN follow
        # Kaiming there, so restore the default here for the same logit scale.
        self.fc.reset_parameters()

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(self.inplanes, planes, stride), BasicBlock(planes, planes, 1)]
        self.inplanes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------------------------- counting


def count_params(module: nn.Module) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of one forward pass on ``example_input`` (one tensor, or a
    tuple of them for a model with several inputs).

    Uses torch's own ``FlopCounterMode`` (convolutions, matmuls, attention) rather than
    per-layer hooks, so attention inside ``nn.TransformerEncoder`` is counted too. The
    fused inference fast path of ``nn.MultiheadAttention`` is invisible to the counter,
    hence it is disabled (and grad kept on) for the count. The module's mode is restored.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.enable_grad():
            module(*example_args(example_input))
        return int(counter.get_total_flops() // 2)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        module.train(was_training)


def model_stats(
    module: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...]
) -> dict[str, int]:
    """``{"params_count", "macs"}`` for a bundle's ``info`` (and the recipes' notes)."""
    return {"params_count": count_params(module), "macs": count_macs(module, example_input)}
