"""Training: one network per threshold (the paper) or one ordinal network for all six levels.

A run folder holds ``run.json`` (the config, model arguments, dataset and package versions) and
one subfolder per trained unit (``th1`` .. ``th6``, or ``multi``) with ``last.pt``, ``best.pt``,
``history.json`` and ``curves.png`` (the paper's Figure 3). Checkpoints are written atomically
and carry everything needed to rebuild the model, so a run reloads, resumes and reports without
the command line that made it.

Under ``torchrun`` each process trains on its share of every batch (DistributedDataParallel:
NCCL on GPUs, gloo on CPUs); rank 0 writes the files, and at the end every rank's weights are
compared through a checksum, so a silent divergence is an error rather than a surprise.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from galseg import TARGETS, THRESHOLDS, GalsegError, __version__
from galseg.dataset import NOISE, ArmDataset, open_dataset
from galseg.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    die_with_parent,
    one_line,
    progress,
    read_json,
)
from galseg.unet import UNet, UNetArgs, build, count_parameters, preset_args

RUN_FILE = "run.json"
SELECTION_SPLITS = {"validation": "val", "test": "test", "train": "train"}
"""--select-on -> the split whose loss picks best.pt ('train' only for overfitting checks)."""


@dataclass(frozen=True)
class Recipe:
    """How a network is optimised: the settings that decide what it learns in a given budget.

    The defaults here are the ``galseg`` candidate: AdamW, a short linear warm-up then a cosine
    decay to zero, cross-entropy plus soft Dice per output plane (arm pixels are 2% of the image,
    bar pixels 0.1%: cross-entropy alone leaves P below the 0.5 cut-off on most of them),
    gradient-norm clipping, batch-norm statistics re-estimated on clean training images after each
    epoch (:func:`recalibrate_batch_norm`). ``paper`` is Rey Deutsch et al. (2023): constant Adam,
    cross-entropy alone, the epoch chosen on the test galaxies. Compare them with
    ``benchmarks/bench_learning.py``.
    """

    optimizer: str = "adamw"  # "adam" or "adamw"
    lr: float = 3e-3  # the peak learning rate
    weight_decay: float = 1e-4  # decoupled (AdamW); Adam adds none
    schedule: str = "cosine"  # "constant", or "cosine": linear warm-up, then cosine to zero
    warmup: float = 0.05  # share of all steps spent warming up (cosine only)
    dice: float = 1.0  # weight of (1 - soft Dice) beside cross-entropy, per output plane
    clip: float = 1.0  # largest gradient norm; 0: no clipping
    bn_images: int = 256  # clean training images that re-estimate batch-norm statistics each epoch
    select_on: str = "validation"


_PAPER_OPTIMISATION = dict(
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    schedule="constant",
    warmup=0.0,
    dice=0.0,
    clip=0.0,
    bn_images=0,
)
RECIPES: dict[str, Recipe] = {
    "base": Recipe(**_PAPER_OPTIMISATION, select_on="validation"),
    "paper": Recipe(**_PAPER_OPTIMISATION, select_on="test"),
    "galseg": Recipe(),
}
"""``galseg`` (the default): what ``benchmarks/bench_learning.py`` measured to learn the demo's task
in the demo's budget; ``base``: the paper's optimisation with the epoch chosen on validation
galaxies (the default before galseg 0.2); ``paper``: as published, the epoch chosen on the test
galaxies."""
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")
BLOW_UP = 1.5
"""An epoch whose validation loss exceeds BLOW_UP times the best so far (or is not finite) is
reported as a blow-up in the log and the history; best.pt is never such an epoch."""


@dataclass
class TrainConfig:
    """One training run; written to ``run.json`` and into every checkpoint."""

    dataset: str
    out: str
    thresholds: tuple[int, ...] = THRESHOLDS
    preset: str = "small"
    head: str = "binary"  # "binary": one 2-class net per threshold; "multi": one ordinal net
    epochs: int = 20
    batch_size: int = 16
    recipe: str = "galseg"  # RECIPES: the optimiser settings below that are None come from it
    lr: float | None = None
    device: str = "auto"
    augment: bool = True
    seed: int = 0
    patience: int = 5
    batch_norm: bool | None = None  # None: the preset's choice
    steps_per_epoch: int | None = None  # cap per epoch (quick runs); None = the whole split
    select_on: str | None = None  # the split choosing best.pt and early stopping; "test": the paper's
    loader_workers: int | None = None  # None: 1 on CPU (augmenting beside the net), 4 on CUDA
    precision: str = "auto"  # bf16 autocast (float32 master weights) on CUDA and native-bf16 CPUs
    target: str = "spiral"  # "spiral", "bar", or "both" (one multi network, a head per structure)
    noise: float = NOISE  # largest sky noise the augmentation adds (share of the image's range)
    normalise: bool = False  # each input put on its own scale first (unet.normalise_images)
    optimizer: str | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    warmup: float | None = None
    dice: float | None = None
    clip: float | None = None
    bn_images: int | None = None

    def __post_init__(self) -> None:
        self.thresholds = tuple(int(t) for t in self.thresholds)
        if self.recipe not in RECIPES:
            raise GalsegError(f"--recipe {self.recipe!r}: choose {', '.join(RECIPES)}")
        for name, value in asdict(RECIPES[self.recipe]).items():  # the run record holds every value
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.optimizer not in OPTIMIZERS:
            raise GalsegError(f"--optimizer {self.optimizer!r}: choose {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise GalsegError(f"--schedule {self.schedule!r}: choose {', '.join(SCHEDULES)}")
        for option, value, high in (
            ("weight-decay", self.weight_decay, 1.0),
            ("warmup", self.warmup, 0.5),
            ("dice", self.dice, 100.0),
            ("clip", self.clip, 1e6),
        ):
            if not (math.isfinite(value) and 0 <= value <= high):
                raise GalsegError(f"--{option} {value}: a number from 0 to {high:g}")
        if self.head not in ("binary", "multi"):
            raise GalsegError(f"--head {self.head!r}: choose binary (one net per threshold) or multi")
        if self.target not in TARGETS:
            raise GalsegError(f"--target {self.target!r}: choose {', '.join(TARGETS)}")
        if self.target == "both" and self.head != "multi":
            raise GalsegError("--target both is one network for arms and bar: add --head multi")
        bad = [t for t in self.thresholds if t not in THRESHOLDS]
        if bad or not self.thresholds:
            raise GalsegError(
                f"--thresholds {bad or '(none)'}: choose among {THRESHOLDS[0]}-{THRESHOLDS[-1]}"
            )
        counts = {"epochs": self.epochs, "batch-size": self.batch_size, "patience": self.patience}
        for option, value in counts.items():
            if int(value) < 1:
                raise GalsegError(f"--{option} {value}: must be at least 1")
        if not 0 <= int(self.bn_images) <= 100_000:
            raise GalsegError(f"--bn-images {self.bn_images}: a number of images from 0 to 100000")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise GalsegError(f"--steps-per-epoch {self.steps_per_epoch}: must be at least 1")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise GalsegError(f"--lr {self.lr}: a number above 0, at most 1")
        if not (math.isfinite(self.noise) and 0 <= self.noise <= 1):
            raise GalsegError(f"--noise {self.noise}: a share of the image's range, from 0 to 1")
        if self.select_on not in SELECTION_SPLITS:
            raise GalsegError(f"--select-on {self.select_on!r}: choose validation or test")
        for thresholds in self.units().values():
            self.model_args(thresholds)  # an unknown preset fails here, before anything is written

    @property
    def structures(self) -> tuple[str, ...]:
        """What the run segments, in the order of its output planes."""
        return TARGETS[self.target]

    @property
    def eval_split(self) -> str:
        """The dataset split watched each epoch: 'val', or 'test' as the paper chose by eye."""
        return SELECTION_SPLITS[self.select_on]

    def units(self) -> dict[str, tuple[int, ...]]:
        """Trained networks by folder name, with the thresholds each predicts."""
        if self.head == "multi":
            return {"multi": self.thresholds}
        return {f"th{t}": (t,) for t in self.thresholds}

    def model_args(self, unit_thresholds: tuple[int, ...]) -> UNetArgs:
        if self.head == "multi":
            return preset_args(
                self.preset,
                head="ordinal",
                thresholds=unit_thresholds,
                batch_norm=self.batch_norm,
                structures=self.structures,
                normalise=self.normalise,
            )
        return preset_args(
            self.preset,
            head="binary",
            classes=2,
            batch_norm=self.batch_norm,
            structures=self.structures,
            normalise=self.normalise,
        )


def parse_thresholds(text: str) -> tuple[int, ...]:
    """'1-6', '3', '1,3,5' -> thresholds."""
    try:
        values: list[int] = []
        for part in text.split(","):
            lo, dash, hi = part.partition("-")
            if dash and not hi.strip():
                raise ValueError(part)  # "1-": a range with no end
            values.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError as exc:
        raise GalsegError(f"--thresholds {text!r}: use forms like 1-6, 3 or 1,3,5") from exc
    return tuple(sorted(set(values)))


# ----------------------------------------------------------------------------- devices

PRECISIONS = ("auto", "float32", "bf16")


@cache
def native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), from the kernel's flag list.

    Without them torch emulates bf16 and autocast runs tens of times slower, so the flags decide,
    never the vendor's name.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def choose_precision(precision: str, device: torch.device) -> str:
    """'bf16' or 'float32' for ``device``: 'auto' takes bf16 on CUDA and on CPUs with native bf16."""
    if precision not in PRECISIONS:
        raise GalsegError(f"--precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    return "bf16" if device.type == "cpu" and native_bf16() else "float32"


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (none for float32)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    precision: str = "float32"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bf16 autocast where the hardware runs it natively (CUDA, AMX/AVX512-BF16 CPUs): the
        weights and the optimiser stay float32. Plain float32 elsewhere."""
        return autocast(self.device, self.precision)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise GalsegError("--device cuda: no CUDA device is visible to torch here; use --device cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise GalsegError(f"--device {name!r}: choose auto, cpu or cuda")
    return torch.device("cpu")


def start_runtime(device: str, precision: str = "auto") -> Runtime:
    """Single process, or one process per device under torchrun (WORLD_SIZE set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Runtime(dev, rank, world, choose_precision(precision, dev))


def _all_sum(values: list[float], runtime: Runtime) -> list[float]:
    if runtime.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return t.tolist()


# ----------------------------------------------------------------------------- loss and accuracy


def loss_and_correct(
    logits: torch.Tensor,
    votes: torch.Tensor,
    args: UNetArgs,
    thresholds: tuple[int, ...],
    dice: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over pixels, and the number of correctly classified pixel-decisions.

    binary: sparse categorical cross-entropy of the 2-class softmax against votes >= th.
    ordinal: the sum over thresholds (and structures: ``votes`` then holds one plane per
    structure) of the binary cross-entropy of P(votes >= th), averaged over pixels; accuracy
    counts each (pixel, structure, threshold) decision. ``dice`` adds, per output plane,
    ``dice * (1 - soft Dice)`` over the whole batch (:func:`soft_dice_loss`).
    """
    logits = logits.float()
    if args.head == "binary":
        target = (votes >= thresholds[0]).long()
        loss = F.cross_entropy(logits, target)
        correct = (logits.argmax(1) == target).sum()
        if dice:
            arm = torch.softmax(logits, 1)[:, 1:]
            loss = loss + dice * soft_dice_loss(arm, target.unsqueeze(1).float())
        return loss, correct
    levels = torch.as_tensor(args.thresholds, device=votes.device).view(1, 1, -1, 1, 1)
    votes = votes.view(votes.shape[0], len(args.structures), *votes.shape[-2:])
    target = (votes.unsqueeze(2) >= levels).flatten(1, 2).float()
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()
    correct = ((logits > 0).float() == target).sum()
    if dice:
        loss = loss + dice * soft_dice_loss(torch.sigmoid(logits), target)
    return loss, correct


DICE_SMOOTH = 1.0
"""Added to the soft Dice's numerator and denominator: a batch with no pixel of a plane scores 1
when the network marks none (and the gradient stays finite)."""


def soft_dice_loss(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over planes of 1 - soft Dice, each plane's pixels pooled over the batch (as nnU-Net's
    batch Dice): a galaxy without arms then weighs by its pixels, not as one whole image. Why:
    cross-entropy on planes where 2% (arms) or 0.1% (bars) of pixels are marked is minimised by
    probabilities below the 0.5 cut-off; Dice rewards the overlap that Jaccard scores."""
    dims = (0, 2, 3)
    overlap = (p * target).sum(dims)
    total = p.sum(dims) + target.sum(dims)
    return (1 - (2 * overlap + DICE_SMOOTH) / (total + DICE_SMOOTH)).sum()


def learning_rate(config: TrainConfig, step: int, total: int) -> float:
    """The learning rate at optimiser step ``step`` (0-based) of ``total``: a pure function of the
    step, so a resumed run follows the same curve without saving a scheduler (resumed with more
    --epochs, the rest of the cosine is taken for the new length)."""
    if config.schedule == "constant":
        return config.lr
    warm = max(1, round(config.warmup * total))
    if step < warm:
        return config.lr * (step + 1) / warm
    done = (step - warm) / max(1, total - warm)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


def is_blow_up(loss: float, best: float) -> bool:
    """Whether an epoch's validation ``loss`` is a blow-up against the ``best`` so far (:data:`BLOW_UP`)."""
    return not math.isfinite(loss) or loss > BLOW_UP * best


def recalibrate_batch_norm(model: torch.nn.Module, loader: DataLoader, runtime: Runtime) -> None:
    """Re-estimate every batch-norm layer's running statistics as the plain average over the
    batches of ``loader`` (clean training images), in place.

    Why: the running statistics gathered while training follow the photometric augmentation (sky
    lifted, stretched, dimmed), not the images the network is evaluated on; on the demo's task an
    epoch's validation Jaccard at th = 3 went from 0.04 with them to 0.12 with statistics from 320
    clean training images (the "precise BN" of Wu & Johnson 2021). Every rank sees the same
    images, so their weights stay equal under DDP.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: each batch counts alike
    was_training = model.training
    model.train()
    with torch.no_grad():
        for image, _ in loader:
            with runtime.autocast():
                model(image.to(runtime.device, non_blocking=True))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam (the paper) or AdamW; AdamW decays no normalisation weights or biases (they set
    scales and offsets, not features)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


# ----------------------------------------------------------------------------- checkpoints


def _save(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[UNet, dict]:
    """Rebuild a network from a checkpoint alone; returns (model in eval mode, checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise GalsegError(f"{path}: no such checkpoint (was the run trained?)")
    try:
        # weights_only: tensors and plain values only, so a hostile file cannot run code here
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        model = build(UNetArgs.from_dict(checkpoint["model_args"]))
        model.load_state_dict(checkpoint["model"])
    except GalsegError as exc:
        raise GalsegError(f"{path}: {exc}") from exc
    except pickle.UnpicklingError as exc:  # torch's message goes on to advise turning this off
        raise GalsegError(
            f"{path}: refused: it holds objects other than tensors and plain values, and a "
            "checkpoint must not run code when loaded"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - pickle, zip and shape errors alike mean a bad file
        raise GalsegError(f"{path}: not a readable galseg checkpoint ({one_line(exc)})") from exc
    return model.to(device).eval(), checkpoint


def environment() -> dict:
    """Package versions as plain strings (torch's version object would not load safely)."""
    return {
        "galseg": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------- the loop


@dataclass
class UnitState:
    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    epochs_since_best: int = 0
    done: bool = False
    history: list[dict] = field(default_factory=list)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[Path, str, UnitState], None] | None = None,
) -> dict[str, UnitState]:
    """Train every unit of ``config`` (resuming from ``last.pt`` with ``resume``).

    ``on_epoch(unit_folder, unit_name, state)`` runs on rank 0 after each epoch's files are
    written (the command line draws Figure 3 there).
    """
    runtime = start_runtime(config.device, config.precision)
    out = Path(config.out)
    data = open_dataset(config.dataset)
    for split in ("train", config.eval_split):
        if len(data.indices(split)) == 0:
            hint = (
                " (prepared before galseg had a validation split: prepare it again)" if split == "val" else ""
            )
            raise GalsegError(f"{config.dataset}: the {split} split is empty{hint}")
    run_file = out / RUN_FILE
    started = any((out / name / "last.pt").exists() for name in config.units())
    if run_file.exists() and not resume and started:
        raise GalsegError(f"{out}: already holds a run; add --resume to continue it, or choose another --out")
    if resume:
        if not run_file.exists():
            raise GalsegError(f"{out}: no {RUN_FILE} to resume; start without --resume")
        saved = read_json(run_file, what="a galseg run record").get("config", {})
        mine = {
            k: v
            for k, v in asdict(config).items()
            if k not in ("epochs", "device", "loader_workers", "precision")
        }
        # runs from before bars segmented arms; from before --noise added up to 0.08; from before
        # --normalise fed the images as they are; from before recipes trained as --recipe base does
        before = {"recipe": "base", **asdict(RECIPES["base"])}
        saved = {"target": "spiral", "noise": 0.08, "normalise": False, **before, **saved}
        theirs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in mine}
        if mine != theirs:
            differ = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise GalsegError(f"{out}: --resume with different settings ({', '.join(differ)})")
    if runtime.world > 1:
        dist.barrier()  # every rank has checked the folder before rank 0 writes to it
    if runtime.main:
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "config": asdict(config),
            "environment": environment(),
            "world_size": runtime.world,
            "dataset_manifest": {
                k: data.manifest.get(k)
                for k in ("size", "seed", "test_fraction", "validation_fraction", "hexagon", "counts")
            },
            "units": {name: list(ths) for name, ths in config.units().items()},
        }
        atomic_write_json(run_file, record)

    if runtime.world > 1:
        dist.barrier()
    states = {}
    for name, thresholds in config.units().items():
        states[name] = _train_unit(config, runtime, data, name, thresholds, resume, log, on_epoch)
        best = states[name]
        if runtime.main:
            log(f"{name}: best epoch {best.best_epoch}, {config.eval_split} loss {best.best_loss:.4f}")
    if runtime.world > 1:
        dist.barrier()
    return states


def _loader(dataset, config: TrainConfig, runtime: Runtime, *, shuffle: bool, seed: int) -> DataLoader:
    # on CPU one worker process augments (single-threaded) while the cores train: augmenting in the
    # training process woke every OpenMP thread for each small operation and halved the rate
    workers = config.loader_workers if config.loader_workers is not None else (4 if runtime.cuda else 1)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        pin_memory=runtime.cuda,
        drop_last=False,
        persistent_workers=workers > 0,
        worker_init_fn=die_with_parent if workers else None,
    )


def _shard(dataset: ArmDataset, runtime: Runtime, *, equal: bool) -> Subset | ArmDataset:
    """This rank's share. Training shares are cut to equal length: DDP needs equal batch counts."""
    if runtime.world == 1:
        return dataset
    stop = len(dataset) // runtime.world * runtime.world if equal else len(dataset)
    return Subset(dataset, range(runtime.rank, stop, runtime.world))


def _train_unit(
    config: TrainConfig,
    runtime: Runtime,
    data,
    name: str,
    thresholds: tuple[int, ...],
    resume: bool,
    log: Callable[[str], None],
    on_epoch: Callable[[Path, str, UnitState], None] | None,
) -> UnitState:
    folder = Path(config.out) / name
    args = config.model_args(thresholds)
    torch.manual_seed(config.seed)
    model = build(args).to(runtime.device)
    if runtime.cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model)
    state = UnitState()
    last = folder / "last.pt"
    if resume and last.exists():
        _, checkpoint = load_checkpoint(last, runtime.device)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state = UnitState(**checkpoint["state"])
        # finished is judged by this run's settings: --resume --epochs 30 extends a 20-epoch run
        state.done = state.epoch >= config.epochs or state.epochs_since_best >= config.patience
    if state.done:
        log(f"{name}: already finished at epoch {state.epoch} (best {state.best_epoch})")
        return state
    folder.mkdir(parents=True, exist_ok=True)
    net = model
    if runtime.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.cuda else None
        )
    structures = config.structures
    train_set = _shard(
        ArmDataset(
            data,
            split="train",
            threshold=None,
            augment=config.augment,
            structures=structures,
            noise=config.noise,
        ),
        runtime,
        equal=True,
    )
    eval_set = _shard(
        ArmDataset(data, split=config.eval_split, threshold=None, structures=structures), runtime, equal=False
    )
    bn_set = ArmDataset(
        data, indices=data.indices("train")[: config.bn_images], threshold=None, structures=structures
    )
    if runtime.main:
        log(
            f"{name} ({'+'.join(structures)}): {count_parameters(model) / 1e6:.2f} M parameters, "
            f"{len(data.indices('train'))} train / "
            f"{len(data.indices(config.eval_split))} {config.eval_split} galaxies, device {runtime.device}"
            f"{f' x{runtime.world}' if runtime.world > 1 else ''}"
        )

    per_epoch = math.ceil(len(train_set) / config.batch_size)
    if config.steps_per_epoch is not None:
        per_epoch = min(per_epoch, config.steps_per_epoch)
    total_steps = per_epoch * config.epochs
    while state.epoch < config.epochs:
        epoch = state.epoch + 1
        # the shuffle and the augmentation both follow (seed, epoch): a resumed run replays them
        torch.manual_seed(config.seed * 100_003 + epoch * 101 + runtime.rank)
        start = time.perf_counter()
        net.train()
        train_loss, train_acc, n_images = _run_epoch(
            net,
            _loader(train_set, config, runtime, shuffle=True, seed=config.seed * 7919 + epoch),
            args,
            thresholds,
            runtime,
            optimizer,
            per_epoch,
            label=f"{name} epoch {epoch} train",
            dice=config.dice,
            clip=config.clip,
            lr_at=lambda step: learning_rate(config, state.epoch * per_epoch + step, total_steps),
        )
        if config.bn_images:
            recalibrate_batch_norm(model, _loader(bn_set, config, runtime, shuffle=False, seed=0), runtime)
        model.eval()  # the bare module: evaluation needs no gradient sync
        with torch.inference_mode():
            eval_loss, eval_acc, _ = _run_epoch(
                model,
                _loader(eval_set, config, runtime, shuffle=False, seed=0),
                args,
                thresholds,
                runtime,
                None,
                None,
                label=f"{name} epoch {epoch} {config.eval_split}",
                dice=config.dice,
            )
        seconds = time.perf_counter() - start
        state.epoch = epoch
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "eval_loss": eval_loss,
                "eval_accuracy": eval_acc,
                "eval_split": config.eval_split,
                "seconds": seconds,
                "train_images": n_images,
            }
        )
        blew_up = is_blow_up(eval_loss, state.best_loss)
        state.history[-1]["blew_up"] = blew_up
        state.history[-1]["lr"] = learning_rate(config, epoch * per_epoch - 1, total_steps)
        improved = eval_loss < state.best_loss
        if improved:
            state.best_loss, state.best_epoch, state.epochs_since_best = eval_loss, epoch, 0
        else:
            state.epochs_since_best += 1
        state.done = state.epoch >= config.epochs or state.epochs_since_best >= config.patience
        if runtime.main:
            payload = {
                "model": model.state_dict(),
                "model_args": args.to_dict(),
                "optimizer": optimizer.state_dict(),
                "state": asdict(state),
                "config": asdict(config),
                "unit": name,
                "thresholds": list(thresholds),
                "environment": environment(),
            }
            if improved:
                _save(folder / "best.pt", payload)
            _save(last, payload)
            atomic_write_bytes(folder / "history.json", (json.dumps(state.history, indent=1) + "\n").encode())
            if on_epoch is not None:
                on_epoch(folder, name, state)
            if blew_up:
                log(
                    f"{name} epoch {epoch}: WARNING the {config.eval_split} loss blew up "
                    f"({eval_loss:.4f}, best {state.best_loss:.4f} at epoch {state.best_epoch}); "
                    "best.pt keeps the best epoch"
                )
            log(
                f"{name} epoch {epoch}/{config.epochs}: loss {train_loss:.4f} / {eval_loss:.4f}, "
                f"accuracy {train_acc:.4f} / {eval_acc:.4f} (train / {config.eval_split}), "
                f"{n_images / seconds:.1f} img/s{' *best*' if improved else ''}"
            )
        if state.done:
            if state.epoch < config.epochs and runtime.main:
                log(
                    f"{name}: no better {config.eval_split} loss for {config.patience} epochs; stopped, "
                    f"best epoch {state.best_epoch}"
                )
            break
    if runtime.world > 1:
        _check_ranks_agree(model, runtime, folder)
    return state


def _run_epoch(
    net,
    loader: DataLoader,
    args: UNetArgs,
    thresholds: tuple[int, ...],
    runtime: Runtime,
    optimizer: torch.optim.Optimizer | None,
    max_steps: int | None,
    label: str = "",
    *,
    dice: float = 0.0,
    clip: float = 0.0,
    lr_at: Callable[[int], float] | None = None,
) -> tuple[float, float, int]:
    """One pass; returns (mean loss per image, pixel accuracy, images seen), summed over ranks.
    With an ``optimizer``, each step's learning rate is ``lr_at(step)`` and gradients are clipped
    to norm ``clip`` (0: not clipped); a step whose loss is not finite is skipped, not taken.

    Shows batches done, images/s and time left (live on a terminal, every 10 s in a log)."""
    loss_sum = correct = decisions = images = 0.0
    per_pixel = 1 if args.head == "binary" else len(args.thresholds)  # votes holds every structure
    steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    bar = progress(total=steps, desc=label, enabled=runtime.main and bool(label))
    for step, (image, votes) in enumerate(loader):
        if step >= steps:
            break
        image = image.to(runtime.device, non_blocking=True)
        votes = votes.to(runtime.device, non_blocking=True)
        if runtime.cuda:
            image = image.contiguous(memory_format=torch.channels_last)
        with runtime.autocast():
            logits = net(image)
        loss, right = loss_and_correct(logits, votes, args, thresholds, dice)
        if optimizer is not None:
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # the norm after DDP's all-reduce is the same on every rank, so all skip or none does
            norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip or math.inf)
            if torch.isfinite(norm):
                optimizer.step()
        n = image.shape[0]
        loss_sum += float(loss.detach()) * n
        correct += float(right)
        decisions += votes.numel() * per_pixel
        images += n
        bar.set_postfix_str(
            f"loss {loss_sum / images:.4f}, {images / bar.format_dict['elapsed']:.1f} img/s"
            if bar.format_dict["elapsed"] > 0
            else "",
            refresh=False,
        )
        bar.update()
    bar.close()
    loss_sum, correct, decisions, images = _all_sum([loss_sum, correct, decisions, images], runtime)
    return loss_sum / max(images, 1), correct / max(decisions, 1), int(images)


def weights_checksum(model: torch.nn.Module) -> float:
    """A number that differs when any weight differs (sum of abs(w) * position weights, float64)."""
    total = 0.0
    for i, p in enumerate(model.parameters()):
        w = p.detach().double().flatten()
        total += float((w * torch.linspace(1, 2, w.numel(), dtype=torch.float64, device=w.device)).sum()) * (
            i + 1
        )
    return total


def _check_ranks_agree(model: torch.nn.Module, runtime: Runtime, folder: Path) -> None:
    mine = torch.tensor([weights_checksum(model)], dtype=torch.float64, device=runtime.device)
    every = [torch.zeros_like(mine) for _ in range(runtime.world)]
    dist.all_gather(every, mine)
    sums = [float(t) for t in every]
    if runtime.main:
        atomic_write_bytes(folder / "ranks.json", json.dumps({"weights_checksums": sums}).encode())
    if len(set(sums)) != 1:
        raise GalsegError(f"{folder}: ranks ended with different weights {sums}; DDP went out of sync")


MAX_SIZE = 2048
"""Largest training image side (px) a run record may claim: the networks are made for 128-512."""
UNIT_NAMES = ("multi", *(f"th{t}" for t in THRESHOLDS))
"""The only unit folder names a run holds (:meth:`TrainConfig.units`): never a path."""


def read_run(run: str | os.PathLike[str]) -> dict:
    """``run.json`` of a run folder, with a clear error if it is not one or if it claims what no
    galseg run can be (unit names that are paths, thresholds outside 1..6, sizes no network was
    trained at, unknown heads or targets): the record decides which files are loaded and what
    each output plane means, so it is checked before anything is."""
    path = Path(run) / RUN_FILE
    if not path.is_file():
        raise GalsegError(f"{run}: not a galseg run folder ({RUN_FILE} missing; train one with galseg train)")
    record = read_json(path, what="a galseg run record")
    try:
        units = {str(k): [int(t) for t in v] for k, v in record["units"].items()}
        size = int(record["dataset_manifest"]["size"])
        head = str(record["config"]["head"])
        target = str(record["config"].get("target", "spiral"))  # runs from before bars: arms
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GalsegError(f"{path}: not a complete galseg run record ({type(exc).__name__}: {exc})") from exc
    if not units or size < 1 or head not in ("binary", "multi"):
        raise GalsegError(f"{path}: not a complete galseg run record (no units, size or head)")
    bad_names = sorted(name for name in units if name not in UNIT_NAMES)
    if bad_names:
        raise GalsegError(f"{path}: unit names {bad_names} are not galseg units ({', '.join(UNIT_NAMES)})")
    for name, ths in units.items():
        if not ths or len(set(ths)) != len(ths) or not set(ths) <= set(THRESHOLDS):
            raise GalsegError(f"{path}: unit {name} lists thresholds {ths}; each of 1-6 at most once")
        if name != "multi" and (head != "binary" or ths != [int(name[2:])]):
            raise GalsegError(f"{path}: unit {name} of a {head} run lists thresholds {ths}")
        if name == "multi" and head != "multi":
            raise GalsegError(f"{path}: a multi unit in a {head} run")
    if not 16 <= size <= MAX_SIZE or size % 16:
        raise GalsegError(f"{path}: training size {size} px is not a galseg size (16-{MAX_SIZE}, by 16)")
    if target not in TARGETS:
        raise GalsegError(f"{path}: unknown target {target!r}; choose {', '.join(TARGETS)}")
    return record
