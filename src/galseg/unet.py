"""The network: a U-Net (Ronneberger et al. 2015) with explicit width, depth, channels and head.

Presets are named sets of constructor arguments, not subclasses. ``paper`` is the network of
Rey Deutsch, Bignone & Pedrosa (2023): base width 64, 5 levels, two 3x3 convolutions with ReLU
per level, 2x2 max-pooling down, 3x3 stride-2 transposed convolutions up, 2-class output,
34.5 M parameters.

Heads:

``binary``
    ``classes`` logits per pixel for a softmax (the paper: 2 classes, one network per threshold).
``ordinal``
    one network for all thresholds: ``len(thresholds)`` logits per pixel for P(votes >= th),
    made non-increasing in th by construction (a first logit, then softplus decrements), so the
    masks at th = 1..6 are nested for every pixel and every input.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from galseg import THRESHOLDS, GalsegError


@dataclass(frozen=True)
class UNetArgs:
    """Everything needed to rebuild a network; stored in every checkpoint."""

    in_channels: int = 3
    base_width: int = 64
    depth: int = 5
    head: str = "binary"  # "binary" or "ordinal"
    classes: int = 2  # binary head only
    thresholds: tuple[int, ...] = field(default=THRESHOLDS)  # ordinal head only
    batch_norm: bool = False

    def to_dict(self) -> dict:
        return {**asdict(self), "thresholds": list(self.thresholds)}

    @classmethod
    def from_dict(cls, values: dict) -> UNetArgs:
        return cls(**{**values, "thresholds": tuple(values.get("thresholds", THRESHOLDS))})


PRESETS: dict[str, dict] = {
    "paper": {"base_width": 64, "depth": 5, "batch_norm": False},
    "small": {"base_width": 16, "depth": 5, "batch_norm": True},
    "tiny": {"base_width": 4, "depth": 3, "batch_norm": True},
}
"""``paper``: the published net, as published. ``small``: for CPUs, with batch normalisation so
that it leaves the all-background solution within an epoch or two. ``tiny``: for tests."""


def preset_args(name: str, **overrides) -> UNetArgs:
    """The preset's arguments with ``overrides`` (None values leave the preset's choice)."""
    if name not in PRESETS:
        raise GalsegError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return UNetArgs(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})


ARM_PRIOR = 0.03
"""Share of pixels that are arm at th = 1 in GZ:3D-like data; the head's starting probability."""


def _double_conv(c_in: int, c_out: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net on (N, C, H, W) inputs with H and W divisible by 2**(depth - 1).

    Returns logits of shape (N, classes, H, W) for the binary head and (N, len(thresholds), H, W)
    for the ordinal head (use :func:`probabilities` for P(votes >= th)).
    """

    def __init__(self, args: UNetArgs) -> None:
        super().__init__()
        if args.head not in ("binary", "ordinal"):
            raise GalsegError(f"unknown head {args.head!r}: binary or ordinal")
        if args.depth < 2:
            raise GalsegError(f"U-Net depth must be at least 2, got {args.depth}")
        self.args = args
        widths = [args.base_width * 2**level for level in range(args.depth)]
        self.down = nn.ModuleList()
        c_in = args.in_channels
        for w in widths:
            self.down.append(_double_conv(c_in, w, args.batch_norm))
            c_in = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_low, w_high in zip(widths[::-1][:-1], widths[::-1][1:], strict=True):
            self.up.append(nn.ConvTranspose2d(w_low, w_high, 3, stride=2, padding=1, output_padding=1))
            self.merge.append(_double_conv(2 * w_high, w_high, args.batch_norm))
        out = args.classes if args.head == "binary" else len(args.thresholds)
        self.head = nn.Conv2d(widths[0], out, 1)
        # start at the prior, not at 50%: arms cover a few percent of the pixels, and a head
        # initialised at even odds spends its first epochs learning that the sky is empty
        # (the rare-class initialisation of Lin et al. 2017's RetinaNet)
        with torch.no_grad():
            self.head.bias.zero_()
            prior = math.log(ARM_PRIOR / (1 - ARM_PRIOR))
            if args.head == "binary":
                self.head.bias[1] = prior
            else:
                self.head.bias[0] = prior
                self.head.bias[1:] = math.log(math.expm1(0.4))  # each threshold 0.4 lower in logit

    @property
    def multiple(self) -> int:
        return 2 ** (self.args.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            ph, pw = -h % self.multiple, -w % self.multiple
            raise GalsegError(
                f"input {h}x{w} px: the U-Net needs height and width divisible by "
                f"{self.multiple}; pad or resize to {h + ph}x{w + pw}"
            )
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1], strict=True):
            x = merge(torch.cat([skip, up(x)], dim=1))
        logits = self.head(x)
        if self.args.head == "ordinal":
            # first logit free, then non-increasing: P(votes >= th) nested in th by construction
            logits = torch.cat([logits[:, :1], logits[:, :1] - torch.cumsum(F.softplus(logits[:, 1:]), 1)], 1)
        return logits


def build(args: UNetArgs) -> UNet:
    return UNet(args)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Per-pixel arm probability: (N, H, W) P(class 1) for binary, (N, T, H, W) P(votes >= th)."""
    if head == "binary":
        return torch.softmax(logits.float(), dim=1)[:, 1]
    return torch.sigmoid(logits.float())
