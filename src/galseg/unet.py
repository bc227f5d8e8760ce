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
    masks at th = 1..6 are nested for every pixel and every input. With several ``structures``
    (spiral arms and bars) the head has one such group per structure, structure-major: one pass,
    every structure, every level; only the last 1x1 convolution grows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from galseg import STRUCTURES, THRESHOLDS, GalsegError


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
    structures: tuple[str, ...] = ("spiral",)  # what the output planes segment (several: ordinal only)
    normalise: bool = False  # scale each image by its own sky and bright end first (normalise_images)

    @property
    def outputs(self) -> int:
        """Output planes: the binary head's classes, or one per (structure, threshold)."""
        return self.classes if self.head == "binary" else len(self.structures) * len(self.thresholds)

    def to_dict(self) -> dict:
        return {**asdict(self), "thresholds": list(self.thresholds), "structures": list(self.structures)}

    @classmethod
    def from_dict(cls, values: dict) -> UNetArgs:
        return cls(
            **{
                **values,
                "thresholds": tuple(values.get("thresholds", THRESHOLDS)),
                "structures": tuple(values.get("structures", ("spiral",))),  # older checkpoints: arms
            }
        )


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


MAX_DEPTH = 8
MAX_BASE_WIDTH = 128
"""The largest U-Net a checkpoint may ask for (the paper's is depth 5, width 64)."""

ARM_PRIOR = 0.03
"""Share of pixels that are arm at th = 1 in GZ:3D-like data; the head's starting probability."""
PRIORS = {"spiral": (ARM_PRIOR, 0.4), "bar": (0.002, 0.15)}
"""Per structure: the starting P(votes >= 1) and the logit step down to each next threshold
(synthetic GZ:3D-like data: arms 2.1% of pixels at th=1 to 0.23% at th=6, bars 0.13% to 0.06%)."""


NORMALISE_QUANTILES = (0.5, 0.995)
"""The sky (median) and the bright end (99.5th percentile) of each image's band mean, which
:func:`normalise_images` maps to 0 and 1."""


def normalise_images(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images shifted and scaled so that each one's sky sits at 0 and its bright end
    at 1 (:data:`NORMALISE_QUANTILES`; the bands keep their ratios). Why: how bright a survey
    shows its sky and its galaxies is its display's choice, not the arms'; networks trained on
    synthetic galaxies without it find arms in real cutouts or not depending on the seed
    (docs/tried.md, "Each image on its own scale"). No weights: a run trained without it loads alike."""
    luminance = x.float().mean(1).flatten(1)
    wanted = torch.tensor(NORMALISE_QUANTILES, device=x.device)
    per_call = max(1, 2**24 // luminance.shape[1])  # torch.quantile takes at most 2**24 values
    q = torch.cat([torch.quantile(part, wanted, dim=1) for part in luminance.split(per_call)], dim=1)
    sky, bright = q[0].view(-1, 1, 1, 1), q[1].view(-1, 1, 1, 1)
    return (x - sky) / (bright - sky).clamp_min(1e-3)


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

    Returns logits of shape (N, classes, H, W) for the binary head and (N, len(structures) * len(thresholds),
    H, W) for the ordinal head (use :func:`probabilities` for P(votes >= th)).
    """

    def __init__(self, args: UNetArgs) -> None:
        super().__init__()
        if args.head not in ("binary", "ordinal"):
            raise GalsegError(f"unknown head {args.head!r}: binary or ordinal")
        # bounded before any layer is made: a checkpoint's arguments must not allocate gigabytes
        if not 2 <= args.depth <= MAX_DEPTH:
            raise GalsegError(f"U-Net depth must be 2 to {MAX_DEPTH}, got {args.depth}")
        if not 1 <= args.base_width <= MAX_BASE_WIDTH:
            raise GalsegError(f"U-Net base width must be 1 to {MAX_BASE_WIDTH}, got {args.base_width}")
        if not 1 <= args.in_channels <= 4:
            raise GalsegError(f"U-Net input channels must be 1 to 4, got {args.in_channels}")
        if args.head == "binary" and args.classes != 2:
            raise GalsegError(f"a binary head has 2 classes, got {args.classes}")
        if not args.thresholds or not set(args.thresholds) <= set(THRESHOLDS):
            raise GalsegError(f"U-Net thresholds {list(args.thresholds)}: choose among 1-6")
        unknown = sorted(set(args.structures) - set(STRUCTURES))
        if unknown or not args.structures:
            raise GalsegError(f"structures {unknown or '(none)'}: choose among {', '.join(STRUCTURES)}")
        if args.head == "binary" and len(args.structures) != 1:
            raise GalsegError("a binary head segments one structure; use the ordinal head for several")
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
        self.head = nn.Conv2d(widths[0], args.outputs, 1)
        # start at the prior, not at 50%: arms cover a few percent of the pixels, and a head
        # initialised at even odds spends its first epochs learning that the sky is empty
        # (the rare-class initialisation of Lin et al. 2017's RetinaNet)
        with torch.no_grad():
            self.head.bias.zero_()
            if args.head == "binary":
                share = PRIORS[args.structures[0]][0]
                self.head.bias[1] = math.log(share / (1 - share))
            else:
                bias = self.head.bias.view(len(args.structures), len(args.thresholds))
                for k, structure in enumerate(args.structures):
                    share, step = PRIORS[structure]
                    bias[k, 0] = math.log(share / (1 - share))
                    bias[k, 1:] = math.log(math.expm1(step))  # each threshold `step` lower in logit

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
        if self.args.normalise:
            x = normalise_images(x)
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
            # per structure, first logit free, then non-increasing: P(votes >= th) nested in th
            n, _, h, w = logits.shape
            g = logits.reshape(n, len(self.args.structures), len(self.args.thresholds), h, w)
            g = torch.cat([g[:, :, :1], g[:, :, :1] - torch.cumsum(F.softplus(g[:, :, 1:]), 2)], 2)
            logits = g.reshape(n, -1, h, w)
        return logits


def build(args: UNetArgs) -> UNet:
    return UNet(args)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Per-pixel probability: (N, H, W) P(class 1) for binary, (N, S * T, H, W) P(votes >= th) for
    ordinal (structure-major)."""
    if head == "binary":
        return torch.softmax(logits.float(), dim=1)[:, 1]
    return torch.sigmoid(logits.float())
