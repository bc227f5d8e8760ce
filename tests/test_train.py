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


def test_recipes_fill_every_optimiser_setting_and_the_paper_recipe_is_the_papers():
    base = TrainConfig(dataset="x", out="y", recipe="base")
    assert (base.optimizer, base.dice, base.select_on, base.bn_images) == ("adam", 0, "validation", 0)
    galseg = TrainConfig(dataset="x", out="y")  # the default
    assert (galseg.recipe, galseg.optimizer, galseg.schedule, galseg.select_on) == (
        "galseg",
        "adamw",
        "cosine",
        "validation",
    )
    assert galseg.dice > 0 and galseg.clip > 0 and galseg.bn_images > 0
    paper = TrainConfig(dataset="x", out="y", recipe="paper")
    assert (paper.optimizer, paper.schedule, paper.lr, paper.dice, paper.clip) == (
        "adam",
        "constant",
        1e-3,
        0,
        0,
    )
    assert paper.select_on == "test"  # the paper chose its epoch on the test galaxies
    # a setting given wins over the recipe's
    mixed = TrainConfig(dataset="x", out="y", recipe="paper", select_on="validation", dice=1.0)
    assert (mixed.select_on, mixed.dice, mixed.optimizer) == ("validation", 1.0, "adam")
    with pytest.raises(GalsegError, match="--recipe 'fast': choose base, paper, galseg"):
        TrainConfig(dataset="x", out="y", recipe="fast")
    with pytest.raises(GalsegError, match="--warmup 0.9"):
        TrainConfig(dataset="x", out="y", warmup=0.9)


def test_the_learning_rate_warms_up_then_decays_to_zero():
    from galseg.train import learning_rate

    config = TrainConfig(dataset="x", out="y", recipe="galseg", lr=0.01, warmup=0.1)
    lrs = [learning_rate(config, step, 100) for step in range(100)]
    assert lrs[0] == pytest.approx(0.001) and lrs[9] == pytest.approx(0.01)  # ten warm-up steps
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))  # then only down
    assert lrs[-1] < 1e-5
    paper = TrainConfig(dataset="x", out="y", recipe="paper")
    assert {learning_rate(paper, step, 100) for step in (0, 50, 99)} == {1e-3}


def test_soft_dice_is_zero_for_a_perfect_mask_and_near_one_for_a_disjoint_one():
    from galseg.train import soft_dice_loss

    target = torch.zeros(2, 3, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    assert float(soft_dice_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    disjoint = 1 - target
    # per plane 1 - 1 / (2 * 16 + 2 * 48 + 1): three planes summed
    assert float(soft_dice_loss(disjoint, target)) == pytest.approx(3 * (1 - 1 / 129), rel=1e-6)
    # a plane nobody marks, predicted empty, costs nothing: smooth galaxies are not punished
    assert float(soft_dice_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))) == pytest.approx(0.0)


def test_dice_adds_to_the_cross_entropy_and_rewards_a_mask_over_the_marked_pixels():
    from galseg.train import loss_and_correct
    from galseg.unet import preset_args

    args = preset_args("tiny", head="ordinal")
    votes = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    votes[..., 4:8, 4:8] = 6  # 6% of the pixels, drawn by everyone
    marked = torch.full((1, 6, 16, 16), -4.0)
    marked[..., 4:8, 4:8] = 4.0
    timid = torch.full((1, 6, 16, 16), -4.0)
    timid[..., 4:8, 4:8] = -0.5  # below the cut: an empty mask
    ce_marked, _ = loss_and_correct(marked, votes[:, 0], args, args.thresholds)
    both_marked, _ = loss_and_correct(marked, votes[:, 0], args, args.thresholds, dice=1.0)
    both_timid, _ = loss_and_correct(timid, votes[:, 0], args, args.thresholds, dice=1.0)
    assert float(both_marked) > float(ce_marked)
    assert float(both_timid) - float(both_marked) > 1.0  # the empty mask pays about 1 per plane


def test_a_blown_up_epoch_is_flagged_and_never_kept(dataset_dir, tmp_path, monkeypatch):
    import galseg.train as training

    assert training.is_blow_up(float("nan"), 0.2) and training.is_blow_up(0.31, 0.2)
    assert not training.is_blow_up(0.25, 0.2)
    real_epoch, calls = training._run_epoch, []

    def second_validation_blows_up(net, loader, args, thresholds, runtime, optimizer, *rest, **kw):
        loss, accuracy, images = real_epoch(net, loader, args, thresholds, runtime, optimizer, *rest, **kw)
        calls.append(optimizer is None)
        return (loss * 10 if optimizer is None and sum(calls) == 2 else loss), accuracy, images

    monkeypatch.setattr(training, "_run_epoch", second_validation_blows_up)
    config = TrainConfig(
        dataset=str(dataset_dir),
        out=str(tmp_path / "r"),
        thresholds=(3,),
        preset="tiny",
        epochs=3,
        batch_size=8,
        steps_per_epoch=2,
        recipe="galseg",
    )
    lines: list[str] = []
    history = train(config, log=lines.append)["th3"].history
    assert [h["blew_up"] for h in history] == [False, True, False]
    assert [line for line in lines if "WARNING" in line][0].startswith(
        "th3 epoch 2: WARNING the val loss blew up"
    )
    _, best = load_checkpoint(tmp_path / "r" / "th3" / "best.pt")
    assert best["state"]["best_epoch"] != 2
    lrs = [h["lr"] for h in history]
    assert lrs[0] > lrs[1] > lrs[2] >= 0 and lrs[2] < 0.1 * config.lr  # the cosine decays


def test_batch_norm_statistics_are_re_estimated_from_the_images_given():
    from galseg.train import Runtime, recalibrate_batch_norm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    net[0].running_mean.fill_(50.0)  # what augmented training left behind
    net[0].running_var.fill_(900.0)
    images = torch.randn(32, 3, 8, 8) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) + 5.0
    loader = torch.utils.data.DataLoader(list(zip(images, torch.zeros(32), strict=True)), batch_size=8)
    net.eval()
    recalibrate_batch_norm(net, loader, Runtime(torch.device("cpu")))
    assert not net.training and net[0].momentum == 0.1  # mode and momentum as they were
    torch.testing.assert_close(net[0].running_mean, images.mean(dim=(0, 2, 3)), rtol=0, atol=1e-4)
    batch_vars = torch.stack([b.var(dim=(0, 2, 3)) for b in images.split(8)])  # unbiased, per batch
    torch.testing.assert_close(net[0].running_var, batch_vars.mean(0), rtol=1e-4, atol=1e-4)
