"""Prepared datasets: resized arrays that match the FITS files, a stable stratified split,
bad files skipped, resumable preparation, and the torch Dataset with its augmentation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from galseg import GalsegError
from galseg.dataset import (
    ArmDataset,
    area_average,
    assign_split,
    open_dataset,
    prepare,
    resize_image,
    resize_votes,
)
from galseg.gz3d import find_gz3d_files, paint_out_hexagon, read_gz3d

SIZE = 32


@pytest.fixture(scope="module")
def prepared(gz3d_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "data"
    prepare(gz3d_dir, out, size=SIZE, seed=0, show_progress=False)
    return open_dataset(out)


def test_area_average_equals_overlap_weights_and_block_means():
    rng = np.random.default_rng(0)
    values = rng.random((525, 7)) * 100
    # independent reference: the overlap of every output pixel [i, i+1) * 525/128 with each input
    edges = np.arange(129) * (525 / 128)
    overlap = np.clip(
        np.minimum(edges[1:, None], np.arange(1, 526)) - np.maximum(edges[:-1, None], np.arange(525)), 0, None
    )
    np.testing.assert_allclose(area_average(values, 128, 0), overlap @ values / (525 / 128), rtol=1e-10)
    image = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    small = resize_image(image, 32)
    blocks = image.reshape(32, 3, 32, 3, 3).astype(float).mean(axis=(1, 3))
    np.testing.assert_array_equal(small, np.rint(blocks).astype(np.uint8))


def test_resized_votes_are_whole_counts_in_0_to_15():
    votes = np.zeros((96, 96))
    votes[10:40, 10:40] = 20  # above 15: clipped, as the method says
    votes[50:60, 51:54] = 4  # covers output pixel (17, 17) fully
    small = resize_votes(votes, 32)
    assert small.dtype == np.uint8 and small.max() == 15
    assert small[5, 5] == 15 and small[17, 17] == 4 and small[0, 0] == 0


def test_prepared_masks_match_the_fits_files(prepared, gz3d_dir):
    images, spiral = prepared.array("images"), prepared.array("spiral")
    assert images.shape == (60, SIZE, SIZE, 3) and spiral.shape == (60, SIZE, SIZE)
    for row in prepared.catalogue[:12]:
        galaxy = read_gz3d(gz3d_dir / row["SOURCE_FILE"])
        assert galaxy.mangaid == row["MANGAID"]
        for th in (1, 3, 6):
            expected = resize_votes(galaxy.spiral_votes, SIZE) >= th
            np.testing.assert_array_equal(spiral[row["INDEX"]] >= th, expected)
            assert row[f"ARM_FRACTION_TH{th}"] == pytest.approx(expected.mean())
        # the image as the volunteers saw it, less the hexagon painted out (prepare's default)
        painted = paint_out_hexagon(galaxy.image, float(galaxy.metadata["IFUDESIGNSIZE"][0]))
        assert (painted != galaxy.image).any()
        np.testing.assert_array_equal(images[row["INDEX"]], resize_image(painted, SIZE))
    # nested thresholds: a pixel with >= 4 votes has >= 3
    assert np.all((spiral >= 4) <= (spiral >= 3))


def test_split_is_stable_stratified_and_a_pure_function_of_the_galaxy():
    ids = [f"1-{i}" for i in range(20001)]
    arms = np.arange(20001) % 4 == 0  # 5,001 with arms, 15,000 without
    split = assign_split(ids, arms, seed=0, test_fraction=0.25)
    for stratum in (arms, ~arms):
        n = int(stratum.sum())
        assert int((split[stratum] == "test").sum()) == int(np.floor(0.25 * n + 0.5))  # to the galaxy
        rest = int((split[stratum] != "test").sum())
        assert int((split[stratum] == "val").sum()) == int(np.floor(0.1 * rest + 0.5))
    reversed_order = assign_split(ids[::-1], arms[::-1], seed=0, test_fraction=0.25)
    np.testing.assert_array_equal(reversed_order, split[::-1])  # the order of the files is irrelevant
    more = assign_split(
        ids + [f"2-{i}" for i in range(500)], list(arms) + [True] * 500, seed=0, test_fraction=0.25
    )
    moved = more[:20001] != split
    assert 0 < moved.sum() <= 15  # a few near the cuts move (7 with this seed), never many
    assert not moved[~arms].any()  # the stratum that gained nothing is untouched
    other_seed = assign_split(ids, arms, seed=1, test_fraction=0.25)
    assert np.mean(other_seed != split) > 0.2


def test_split_survives_adding_files(gz3d_dir, prepared, tmp_path):
    from galseg.synthetic import write_synthetic

    bigger = tmp_path / "gz3d"
    shutil.copytree(gz3d_dir, bigger)
    list(write_synthetic(bigger, n=70, seed=7, size=96, workers=1))  # galaxies 60..69 are new
    prepare(bigger, tmp_path / "more", size=SIZE, show_progress=False)
    more = open_dataset(tmp_path / "more")
    before = dict(zip(prepared.catalogue["MANGAID"], prepared.catalogue["SPLIT"], strict=True))
    after = dict(zip(more.catalogue["MANGAID"], more.catalogue["SPLIT"], strict=True))
    assert len(after) == 70 and sum(after[m] != s for m, s in before.items()) <= 3


def test_bad_files_are_skipped_and_reported(gz3d_dir, tmp_path, capsys):
    from galseg.cli import main

    folder = tmp_path / "gz3d"
    shutil.copytree(gz3d_dir, folder)
    (folder / "junk.fits").write_text("not fits at all")
    good = find_gz3d_files(gz3d_dir)[0].read_bytes()
    (folder / "sub").mkdir()
    (folder / "sub" / "cut.fits.gz").write_bytes(good[: len(good) // 3])
    # the good ones are prepared, the bad named on stderr, and the exit status says some failed
    assert (
        main(["prepare", str(folder), "--out", str(tmp_path / "ds"), "--size", "32", "--workers", "2"]) == 1
    )
    said = capsys.readouterr()
    assert "60 prepared, 2 skipped" in said.out
    assert "skipped: junk.fits" in said.err and "skipped: sub/cut.fits.gz" in said.err
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    reasons = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"junk.fits", "sub/cut.fits.gz"}
    assert "not a readable GZ:3D FITS file" in reasons["junk.fits"]


def test_interrupted_prepare_resumes_to_the_same_bytes(gz3d_dir, prepared, tmp_path, monkeypatch):
    import galseg.dataset as dataset

    monkeypatch.setattr(dataset, "CHUNK", 16)
    clean = tmp_path / "clean"
    prepare(gz3d_dir, clean, size=SIZE, show_progress=False)

    calls = {"n": 0}
    real_save = dataset._save_chunk

    def dies_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_save(*args, **kwargs)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(dataset, "_save_chunk", dies_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        prepare(gz3d_dir, resumed, size=SIZE, show_progress=False)
    assert not (resumed / "manifest.json").exists()
    with pytest.raises(GalsegError, match="unfinished: rerun galseg prepare"):
        open_dataset(resumed)
    assert len(list((resumed / "parts").glob("chunk_*.npz"))) == 2
    monkeypatch.setattr(dataset, "_save_chunk", real_save)
    prepare(gz3d_dir, resumed, size=SIZE, show_progress=False)
    for name in ("images.npy", "spiral.npy", "bar.npy", "catalogue.ecsv", "manifest.json"):
        assert (resumed / name).read_bytes() == (clean / name).read_bytes(), name
    assert not (resumed / "parts").exists()


def test_dataset_targets_and_augmentation(prepared):
    plain = ArmDataset(prepared, split="train", threshold=3)
    votes = ArmDataset(prepared, split="train", threshold=None)
    image, target = plain[0]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target.dtype == torch.int64 and set(target.unique().tolist()) <= {0, 1}
    np.testing.assert_array_equal(target.numpy(), (votes[0][1] >= 3).numpy())
    splits = [len(ArmDataset(prepared, split=name)) for name in ("train", "val", "test")]
    assert len(plain) == splits[0] and all(splits) and sum(splits) == 60

    augmented = ArmDataset(prepared, split="train", threshold=None, augment=True, photometric=False)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        aug_image, aug_votes = augmented[0]
        # the same transform moved image and target together: find it among the eight
        matches = [
            (k, f)
            for k in range(4)
            for f in (False, True)
            if torch.equal(aug_image, _dihedral(image, k, f))
            and torch.equal(aug_votes, _dihedral(votes[0][1], k, f))
        ]
        assert matches, "image and target were transformed differently"
        seen.add(matches[0])
    assert len(seen) >= 6


def test_survey_augmentation_keeps_votes_whole_and_on_their_pixels():
    from galseg.dataset import _rescale, augment_photometry

    votes = torch.zeros(64, 64, dtype=torch.long)
    votes[20:40, 10:30] = 3
    votes[25:30, 15:20] = 7
    image = (votes.float() / 15).expand(3, -1, -1).contiguous()
    for scale in (0.6, 1.3):
        small_image, small_votes = _rescale(image, votes, scale)
        assert small_image.shape == image.shape and small_votes.shape == votes.shape
        lit, voted = small_image[0] > 0.1, small_votes > 0
        assert (lit & voted).sum() / (lit | voted).sum() > 0.8  # the votes moved with the light
        assert set(small_votes.unique().tolist()) <= {0, 3, 7}
    assert _rescale(image, votes, 0.6)[1].count_nonzero() < votes.count_nonzero()
    torch.manual_seed(1)
    grey = changed = 0
    for _ in range(60):
        out, out_votes = augment_photometry(image.clone(), votes.clone())
        assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
        assert set(out_votes.unique().tolist()) <= {0, 3, 7}
        grey += bool(torch.equal(out[0], out[1]) and torch.equal(out[1], out[2]))
        changed += not torch.allclose(out, image)
    assert grey >= 10 and changed >= 55


def test_the_noise_setting_changes_only_the_added_noise():
    from galseg.dataset import augment_photometry

    votes = torch.zeros(32, 32, dtype=torch.long)
    image = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32).expand(3, -1, -1).contiguous()
    noisy = 0
    for seed in range(40):
        torch.manual_seed(seed)
        clean, _ = augment_photometry(image.clone(), votes, noise=0.0)
        torch.manual_seed(seed)
        grainy, _ = augment_photometry(image.clone(), votes, noise=0.3)
        if not torch.equal(clean, grainy):  # the same draws: only the noise step may differ
            noisy += 1
            assert (grainy - clean).std() > 0.01
    assert 10 <= noisy <= 30  # noise is added to about half of the images


def _dihedral(x, k, flip):
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1))


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(GalsegError, match="not a prepared galseg dataset"):
        open_dataset(tmp_path)
