"""Training end to end on small synthetic datasets: it learns, it resumes exactly, it scales out."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from galseg import GalsegError
from galseg.dataset import prepare
from galseg.gz3d import find_gz3d_files, read_gz3d
from galseg.train import TrainConfig, load_checkpoint, parse_thresholds, read_run, train


@pytest.fixture(scope="module")
def eight_spirals(gz3d_dir, tmp_path_factory):
    """A dataset of the first eight galaxies with arm votes, all in the training split."""
    folder = tmp_path_factory.mktemp("eight")
    spirals = [p for p in find_gz3d_files(gz3d_dir) if read_gz3d(p).spiral_votes.max() >= 3][:8]
    assert len(spirals) == 8
    for p in spirals:
        shutil.copy(p, folder / p.name)
    out = folder / "ds"
    prepare(folder, out, size=32, test_fraction=0.01, show_progress=False)
    return out


def quiet(_line: str) -> None:
    pass


def test_a_tiny_net_overfits_eight_galaxies(eight_spirals, tmp_path):
    config = TrainConfig(
        dataset=str(eight_spirals),
        out=str(tmp_path / "run"),
        thresholds=(2,),
        preset="tiny",
        epochs=60,
        batch_size=8,
        lr=1e-2,
        augment=False,
        select_on="train",
        patience=100,
    )
    history = train(config, log=quiet)["th2"].history
    first, last = history[0]["eval_loss"], min(h["eval_loss"] for h in history[-5:])
    assert last < 0.5 * first
    model, checkpoint = load_checkpoint(tmp_path / "run" / "th2" / "best.pt")
    assert checkpoint["state"]["best_loss"] == pytest.approx(min(h["eval_loss"] for h in history))
    assert model.args.head == "binary" and not model.training


def test_resume_after_a_kill_continues_the_same_curves(dataset_dir, tmp_path):
    def config(out):
        return TrainConfig(
            dataset=str(dataset_dir),
            out=str(out),
            thresholds=(1, 3),
            preset="tiny",
            epochs=4,
            batch_size=8,
            steps_per_epoch=3,
            patience=10,
        )

    full = train(config(tmp_path / "full"), log=quiet)

    def killed_after_epoch_2(folder, name, state):
        if name == "th3" and state.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "cut"), log=quiet, on_epoch=killed_after_epoch_2)
    with pytest.raises(GalsegError, match="already holds a run; add --resume"):
        train(config(tmp_path / "cut"), log=quiet)
    resumed = train(config(tmp_path / "cut"), resume=True, log=quiet)
    for name in ("th1", "th3"):
        epochs = [h["epoch"] for h in resumed[name].history]
        assert epochs == [1, 2, 3, 4]
        for a, b in zip(full[name].history, resumed[name].history, strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
            assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-5)
        saved = json.loads((tmp_path / "cut" / name / "history.json").read_text())
        assert [h["epoch"] for h in saved] == [1, 2, 3, 4]
    assert read_run(tmp_path / "cut")["units"] == {"th1": [1], "th3": [3]}


def test_resume_refuses_other_settings(dataset_dir, tmp_path):
    base = dict(
        dataset=str(dataset_dir),
        out=str(tmp_path / "r"),
        thresholds=(3,),
        preset="tiny",
        epochs=1,
        batch_size=8,
        steps_per_epoch=1,
    )
    train(TrainConfig(**base), log=quiet)
    with pytest.raises(GalsegError, match=r"different settings \(lr\)"):
        train(TrainConfig(**{**base, "lr": 0.5}), resume=True, log=quiet)
    with pytest.raises(GalsegError, match=r"different settings \(noise\)"):
        train(TrainConfig(**{**base, "noise": 0.2}), resume=True, log=quiet)
    # a run from before the noise setting added up to 0.08, today's default: it resumes
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    del record["config"]["noise"]
    (tmp_path / "r" / "run.json").write_text(json.dumps(record))
    train(TrainConfig(**{**base, "epochs": 2}), resume=True, log=quiet)
    # a run from before --normalise fed its images as they were: it resumes only so
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    del record["config"]["normalise"]
    (tmp_path / "r" / "run.json").write_text(json.dumps(record))
    with pytest.raises(GalsegError, match=r"different settings \(normalise\)"):
        train(TrainConfig(**{**base, "epochs": 3, "normalise": True}), resume=True, log=quiet)
    train(TrainConfig(**{**base, "epochs": 3}), resume=True, log=quiet)
    with pytest.raises(GalsegError, match="--noise"):
        TrainConfig(**{**base, "noise": 1.5})


def test_early_stopping_keeps_the_best_epoch(dataset_dir, tmp_path):
    config = TrainConfig(
        dataset=str(dataset_dir),
        out=str(tmp_path / "r"),
        thresholds=(3,),
        preset="tiny",
        epochs=30,
        batch_size=8,
        steps_per_epoch=2,
        lr=0.5,
        patience=2,
    )
    state = train(config, log=quiet)["th3"]  # a silly learning rate: the loss stops improving
    assert state.epoch < 30 and state.epochs_since_best == 2
    assert state.best_epoch == state.epoch - 2


def test_thresholds_parse():
    assert parse_thresholds("1-6") == (1, 2, 3, 4, 5, 6)
    assert parse_thresholds("1,3-4") == (1, 3, 4)
    with pytest.raises(GalsegError):
        parse_thresholds("three")
    with pytest.raises(GalsegError, match="choose among 1-6"):
        TrainConfig(dataset="x", out="y", thresholds=(7,))


@pytest.mark.slow
def test_torchrun_two_cpu_processes_end_with_identical_weights(dataset_dir, tmp_path, torchrun):
    out = tmp_path / "ddp"
    torchrun(
        "train",
        str(dataset_dir),
        "--out",
        str(out),
        "--thresholds",
        "3",
        "--preset",
        "tiny",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--steps-per-epoch",
        "3",
    )
    sums = json.loads((out / "th3" / "ranks.json").read_text())["weights_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    model, checkpoint = load_checkpoint(out / "th3" / "last.pt")
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    # both ranks trained on their own halves: 2 ranks x 3 steps x 4 images per epoch
    assert checkpoint["state"]["history"][0]["train_images"] == 24
    assert torch.isfinite(torch.tensor(checkpoint["state"]["best_loss"]))


def test_ordinal_loss_matches_a_hand_computation():
    import math

    from galseg.train import loss_and_correct
    from galseg.unet import preset_args

    args = preset_args("tiny", head="ordinal")
    # two pixels: one drawn by 3 volunteers (targets 1,1,1,0,0,0), one by none (all 0)
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -2.0, -3.0]).view(1, 6, 1, 1).repeat(1, 1, 1, 2)
    votes = torch.tensor([[[3, 0]]])
    loss, correct = loss_and_correct(logits, votes, args, args.thresholds)

    def softplus(x):
        return math.log1p(math.exp(x))

    # binary cross-entropy of a logit l: softplus(-l) for target 1, softplus(l) for target 0
    pixel_3 = softplus(-2) + softplus(-1) + softplus(0) + softplus(-1) + softplus(-2) + softplus(-3)
    pixel_0 = softplus(2) + softplus(1) + softplus(0) + softplus(-1) + softplus(-2) + softplus(-3)
    assert float(loss) == pytest.approx((pixel_3 + pixel_0) / 2, rel=1e-6)
    # decisions logit > 0: pixel 3 gets th1, th2 right and th3 wrong (0 is not > 0), th4-6 right: 5;
    # pixel 0 gets th1, th2 wrong, th3-6 right: 4
    assert int(correct) == 9


def test_binary_loss_is_sparse_categorical_cross_entropy():
    import math

    from galseg.train import loss_and_correct
    from galseg.unet import preset_args

    args = preset_args("tiny")
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, :, 0, 0] = torch.tensor([0.0, 2.0])  # pixel a favours arm
    logits[0, :, 0, 1] = torch.tensor([1.0, 0.0])  # pixel b favours sky
    votes = torch.tensor([[[4, 4]]])  # both arm at th=3
    loss, correct = loss_and_correct(logits, votes, args, (3,))
    ce_a = -math.log(math.exp(2) / (1 + math.exp(2)))
    ce_b = -math.log(1 / (math.exp(1) + 1))
    assert float(loss) == pytest.approx((ce_a + ce_b) / 2, rel=1e-6)
    assert int(correct) == 1


def test_resume_with_more_epochs_extends_a_finished_run(dataset_dir, tmp_path):
    def config(epochs):
        return TrainConfig(
            dataset=str(dataset_dir),
            out=str(tmp_path / "r"),
            thresholds=(3,),
            preset="tiny",
            epochs=epochs,
            batch_size=8,
            steps_per_epoch=1,
            patience=10,
        )

    train(config(2), log=quiet)
    state = train(config(3), resume=True, log=quiet)["th3"]
    assert [h["epoch"] for h in state.history] == [1, 2, 3]
