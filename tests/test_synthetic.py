"""Synthetic galaxies: whole vote counts, realistic proportions, deterministic bytes."""

from __future__ import annotations

import numpy as np
import pytest

from galseg.gz3d import find_gz3d_files, read_gz3d, votes_from_paths
from galseg.synthetic import ENGAGEMENT_HALF, _engagement, synthesize, truth_from_metadata, write_synthetic


@pytest.fixture(scope="module")
def sample():
    return [synthesize(i, seed=11, size=96) for i in range(240)]


def test_vote_counts_are_whole_non_negative_and_mostly_at_most_15(sample):
    drawn = np.concatenate([g.spiral_votes[g.spiral_votes > 0] for g, _ in sample])
    assert drawn.size > 0
    for g, _ in sample:
        assert np.all(g.spiral_votes == np.round(g.spiral_votes)) and g.spiral_votes.min() >= 0
        assert np.all(g.bar_votes == np.round(g.bar_votes)) and g.bar_votes.min() >= 0
    assert np.mean(drawn > 15) < 0.04  # overlapping outlines exceed 15 now and then, as in GZ:3D


def test_counts_equal_the_rasterised_raw_outlines(sample):
    for g, _ in sample[:60]:
        shape = g.spiral_votes.shape
        np.testing.assert_array_equal(votes_from_paths(g.spiral_paths["spiral_paths"], shape), g.spiral_votes)
        np.testing.assert_array_equal(votes_from_paths(g.bar_paths["bar_paths"], shape), g.bar_votes)


def test_about_a_quarter_of_galaxies_have_arm_pixels(sample):
    with_arms = np.mean([g.spiral_votes.max() > 0 for g, _ in sample])
    assert 0.15 < with_arms < 0.35
    # and arms are drawn mostly where the generator put arms
    drawn_on_spirals = [g.spiral_votes.max() >= 3 for g, t in sample if t.n_arms]
    drawn_elsewhere = [g.spiral_votes.max() >= 3 for g, t in sample if not t.n_arms]
    assert np.mean(drawn_on_spirals) > 0.6 and np.mean(drawn_elsewhere) < 0.02
    # volunteers as they are: on some spirals few draw, on others nearly all
    drawers = [sum(1 for p in g.spiral_outlines() if p) / g.n_classifications for g, t in sample if t.n_arms]
    assert np.percentile(drawers, 10) < 0.3 and np.percentile(drawers, 90) > 0.6


def test_more_volunteers_draw_where_arms_stand_out():
    """The share who draw follows the arms' visibility, with a wide spread at any one visibility;
    nobody draws arms that are not there."""
    rng = np.random.default_rng(0)
    faint, median, bright = (
        np.array([_engagement(rng, ENGAGEMENT_HALF * f) for _ in range(500)]) for f in (0.2, 1.0, 5.0)
    )
    assert faint.mean() < 0.2 and 0.35 < median.mean() < 0.65 and bright.mean() > 0.8
    assert np.mean(median < 0.3) > 0.1 and np.mean(median > 0.7) > 0.1
    assert _engagement(rng, 0.0) < 1e-12


def test_about_15_volunteers_and_the_metadata_counts_them_as_real_files_do(sample):
    for g, _ in sample[:40]:
        n = g.n_classifications
        assert 13 <= n <= 17
        # as in the real files, GZ_total_classifications is not the number of volunteers
        assert 2 * n <= g.metadata["GZ_total_classifications"][0] <= 3.5 * n
        drew = sum(1 for paths in g.spiral_outlines() if paths)
        assert g.metadata["GZ_spiral_votes"][0] == drew


def test_arms_hold_more_votes_on_their_ridge_than_at_their_edge(sample):
    ridge_means, voted_means = [], []
    for g, truth in sample:
        votes = g.spiral_votes
        if truth.kind != "spiral" or votes.max() < 5:  # grand design: arms evenly spaced
            continue
        radii = truth.arm_start_px * np.geomspace(1.3, 2.0, 8)
        xy = np.concatenate([truth.ridge_xy(k, radii) for k in range(truth.n_arms)])
        col, row = np.round(xy).astype(int).T
        keep = (row >= 0) & (row < votes.shape[0]) & (col >= 0) & (col < votes.shape[1])
        on_ridge = votes[row[keep], col[keep]]
        on_ridge = on_ridge[on_ridge > 0]
        if on_ridge.size:
            ridge_means.append(on_ridge.mean())
            voted_means.append(votes[votes > 0].mean())
    assert len(ridge_means) >= 10
    assert np.median(np.array(ridge_means) / np.array(voted_means)) > 1.2


def test_truth_travels_in_the_metadata(sample):
    g, truth = next((g, t) for g, t in sample if t.n_arms)
    back = truth_from_metadata(g.metadata)
    assert back.n_arms == truth.n_arms and back.barred == truth.barred
    assert back.chirality == truth.chirality and back.kind == truth.kind
    assert back.arm_start_px == pytest.approx(truth.arm_start_px, rel=1e-6)
    assert back.pitch_deg == pytest.approx(truth.pitch_deg, rel=1e-6)
    assert 5 <= truth.pitch_deg <= 40 and 1 <= truth.n_arms <= (6 if truth.kind == "spiral" else 14)


def test_the_sky_is_rendered_on_the_survey_grid_so_noise_is_correlated():
    """Rendered on 0.396" pixels and resampled 4x, like real GZ:3D cutouts: neighbouring pixels
    share their noise, pixels four apart barely do."""
    made = (synthesize(i, seed=2, size=525) for i in range(20))
    galaxy = next(g for g, t in made if t.kind == "elliptical")
    grey = galaxy.image.astype(float).mean(axis=2)
    corners = [grey[:64, :64], grey[:64, -64:], grey[-64:, :64], grey[-64:, -64:]]
    sky = min(corners, key=np.var)  # the emptiest corner: no star or neighbour in it
    sky = sky - sky.mean()
    correlation = [float((sky[:, :-lag] * sky[:, lag:]).mean() / sky.var()) for lag in (1, 4)]
    assert correlation[0] > 0.7 and abs(correlation[1]) < 0.35


def test_same_seed_same_bytes_and_galaxies_do_not_depend_on_n(tmp_path):
    a = sorted(write_synthetic(tmp_path / "a", n=3, seed=5, size=64, workers=1))
    b = sorted(write_synthetic(tmp_path / "b", n=5, seed=5, size=64, workers=1))
    c = sorted(write_synthetic(tmp_path / "c", n=3, seed=6, size=64, workers=1))
    assert [p.name for p in a] == [p.name for p in b[:3]]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=False))
    assert a[0].read_bytes() != c[0].read_bytes()
    assert read_gz3d(a[0]).mangaid == "S005-000000"


def test_synth_is_resumable(tmp_path):
    first = sorted(write_synthetic(tmp_path, n=2, seed=1, size=48, workers=1))
    stamp = first[0].stat().st_mtime_ns
    again = sorted(write_synthetic(tmp_path, n=4, seed=1, size=48, workers=1))
    assert first[0].stat().st_mtime_ns == stamp and len(again) == 4
    assert len(find_gz3d_files(tmp_path)) == 4


def test_some_volunteers_outlines_cross_themselves_and_hdu_3_drops_them(sample):
    from galseg.gz3d import is_simple_outline, rasterise_outlines

    outlines = [p for g, _ in sample for d in g.spiral_outlines() for p in d]
    crossing = [p for p in outlines if not is_simple_outline(p)]
    assert 0.25 < len(crossing) / len(outlines) < 0.6  # the real 1-1747: 6 of 15
    for g, _ in sample:
        mine = [p for d in g.spiral_outlines() for p in d]
        if any(not is_simple_outline(p) for p in mine):
            every = rasterise_outlines(mine, g.spiral_votes.shape, production_rule=False)
            assert every.sum() > g.spiral_votes.sum()  # HDU 3 counts only the simple ones
            np.testing.assert_array_equal(rasterise_outlines(mine, g.spiral_votes.shape), g.spiral_votes)
            break
    else:
        raise AssertionError("no galaxy with a crossing outline")


def test_the_thick_world_changes_the_light_of_discs_and_nothing_the_volunteers_drew():
    from galseg.synthetic import THICK

    discs = 0
    for index in range(60):
        classic, truth = synthesize(index, seed=11, size=96)
        thick, truth_thick = synthesize(index, seed=11, size=96, world=THICK)
        assert truth_thick == truth  # the same draws: the same galaxy, votes and truth
        np.testing.assert_array_equal(thick.spiral_votes, classic.spiral_votes)
        np.testing.assert_array_equal(thick.bar_votes, classic.bar_votes)
        if truth.kind == "elliptical":  # no disc, so no disc bulge or bar: the same bytes
            np.testing.assert_array_equal(thick.image, classic.image)
        else:  # the bulge's shape (and a bar's light) differ
            assert not np.array_equal(thick.image, classic.image)
            discs += 1
    assert discs >= 30


def test_synth_world_thick_writes_the_thick_world(tmp_path):
    from galseg.cli import main
    from galseg.synthetic import THICK, file_name

    command = ["synth", "--out", str(tmp_path), "--n", "4", "--seed", "11", "--size", "64", "--workers", "1"]
    assert main([*command, "--world", "thick", "--no-preview"]) == 0
    for index in range(4):
        written = read_gz3d(tmp_path / file_name(11, index)).image
        np.testing.assert_array_equal(written, synthesize(index, seed=11, size=64, world=THICK)[0].image)
