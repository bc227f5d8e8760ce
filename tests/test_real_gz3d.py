"""The three real DR17 GZ:3D files (tests/data/gz3d, copied from ../shared/real/gz3d with their
README): what a real file holds, read, re-rasterised by the production rule, prepared, predicted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from galseg.gz3d import (
    find_gz3d_files,
    hexagon_distance,
    is_simple_outline,
    rasterise_outlines,
    read_gz3d,
    votes_from_paths,
)

REAL = Path(__file__).parent / "data" / "gz3d"
DRAWN = REAL / "gz3d_1-1747_37_14709548.fits.gz"  # the one with spiral and bar drawings
UNDRAWN = [REAL / "gz3d_1-1243_19_14709532.fits.gz", REAL / "gz3d_1-411_37_14709021.fits.gz"]


@pytest.fixture(scope="module")
def drawn():
    return read_gz3d(DRAWN)


def test_every_real_file_reads_with_its_quirks():
    files = find_gz3d_files(REAL)
    assert [f.name for f in files] == sorted(p.name for p in [DRAWN, *UNDRAWN])
    for path in files:
        galaxy = read_gz3d(path)
        assert galaxy.image.shape == (525, 525, 3) and galaxy.image.dtype == np.uint8
        # 15 volunteers each, whatever GZ_total_classifications says (33, 42, 50)
        assert galaxy.n_classifications == 15
        assert int(galaxy.metadata["GZ_total_classifications"][0]) > 15
        assert galaxy.mangaid == path.name.split("_")[1]
    for path in UNDRAWN:  # nobody drew: the outline tables are empty (typed D), the masks zero
        galaxy = read_gz3d(path)
        assert len(galaxy.spiral_paths) == 0 and len(galaxy.bar_paths) == 0
        assert galaxy.spiral_votes.max() == 0 and galaxy.bar_votes.max() == 0
        assert galaxy.spiral_outlines() == [] and galaxy.bar_outlines() == []


def test_volunteers_who_drew_nothing_and_single_vertex_outlines_are_rows_too(drawn):
    texts = [str(t).strip() for t in drawn.spiral_paths["spiral_paths"]]
    assert len(texts) == 15 and texts.count("[]") == 4
    # a one-vertex "outline" covers nothing and is not an outline
    assert sum(len(d) for d in drawn.spiral_outlines()) == 15  # of 16 drawn, one is a single vertex


def test_the_production_rule_remakes_hdu_3_and_4(drawn):
    bar = votes_from_paths(drawn.bar_paths["bar_paths"], drawn.bar_votes.shape)
    np.testing.assert_array_equal(bar, drawn.bar_votes)
    spiral = votes_from_paths(drawn.spiral_paths["spiral_paths"], drawn.spiral_votes.shape)
    differ = spiral != drawn.spiral_votes
    assert differ.sum() < 500  # pixel-edge handling
    assert np.abs(spiral - drawn.spiral_votes).max() == 1
    assert spiral.max() == drawn.spiral_votes.max() == 5
    outlines = [p for d in drawn.spiral_outlines() for p in d]
    assert sum(not is_simple_outline(p) for p in outlines) == 6
    every = rasterise_outlines(outlines, drawn.spiral_votes.shape, production_rule=False)
    assert (every != drawn.spiral_votes).sum() > 10_000  # counting the crossing outlines is wrong


def test_simple_outline_examples():
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
    assert is_simple_outline(square)
    assert is_simple_outline(np.vstack([square, square[:1]]))  # ends where it began: a ring
    assert is_simple_outline(np.array([[0, 0], [4, 0], [4, 0], [4, 4], [0, 4]], float))  # double click
    assert not is_simple_outline(np.array([[0, 0], [4, 4], [4, 0], [0, 4]], float))  # a bow tie
    assert not is_simple_outline(np.array([[0, 0], [4, 0], [4, 4], [2, 0], [2, -2]], float))  # touches
    assert not is_simple_outline(np.array([[0, 0], [4, 0], [4, 4], [0, 4], [0, 2], [6, 2]], float))
    # only the closing segment, never drawn, crosses the line: the production code keeps it
    assert is_simple_outline(np.array([[0, 0], [4, 0], [4, 4], [-1, 4], [2, 6]], float))


def test_prepare_checks_the_outlines_by_the_production_rule(tmp_path):
    from galseg.dataset import prepare

    manifest = prepare(REAL, tmp_path / "ds", size=64, show_progress=False)
    assert manifest["counts"]["prepared"] == 3 and manifest["counts"]["skipped"] == 0
    check = manifest["outline_check"]
    assert check["galaxies_differing"] == 1 and 0 < check["max_pixels_differing"] < 500


def test_predict_writes_a_row_and_masks_for_each_real_file(tmp_path):
    from galseg.cli import main

    out = tmp_path / "p"
    assert main(["predict", str(REAL), "--out", str(out)]) == 0
    from astropy.table import Table

    catalogue = Table.read(out / "catalogue.ecsv")
    assert sorted(set(catalogue["NAME"])) == ["1-1243", "1-1747", "1-411"]  # the MANGAID, not the file
    assert len(catalogue) == 3 * 6  # a row per galaxy and threshold, no error rows (rc 0 above)
    assert len(list((out / "masks").glob("*.fits.gz"))) == 3
    # the ready model at its defaults gives no arms and no bar from th = 2 up to the two galaxies
    # nobody drew any on (1-1243's bright star at the frame's edge is not part of the galaxy);
    # the 0.2.7 weights give 1-411 a small bar at th = 1 (one of its 50 classifications said bar)
    undrawn = catalogue[np.isin(catalogue["NAME"], ["1-1243", "1-411"])]
    assert not undrawn["HAS_ARMS"][undrawn["TH"] >= 2].any()
    assert not undrawn["HAS_BAR"][undrawn["TH"] >= 2].any()
    # and it finds the bar the volunteers outlined on 1-1747, at every level
    assert catalogue["HAS_BAR"][catalogue["NAME"] == "1-1747"].all()


def _extent(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.max() - xs.min()), int(ys.max() - ys.min())


def test_the_hexagon_is_found_and_painted_out_of_every_real_image():
    from galseg.gz3d import _magenta, find_hexagon, ifu_design_size, paint_out_hexagon

    for path in find_gz3d_files(REAL):
        galaxy = read_gz3d(path)
        ifu = ifu_design_size(galaxy.metadata)
        assert find_hexagon(galaxy.image) == ifu  # found by its colour and size alone
        assert _magenta(galaxy.image).sum() > 300
        painted = paint_out_hexagon(galaxy.image, ifu)
        assert _magenta(painted).sum() == 0
        far = hexagon_distance(int(ifu)) > 6  # the galaxy and sky away from the line stay as they were
        np.testing.assert_array_equal(painted[far], galaxy.image[far])


def test_the_burned_hexagon_has_the_real_ones_size_and_colour():
    from galseg.gz3d import _magenta, burn_hexagon

    dark = np.full((525, 525, 3), 30, np.uint8)
    for path in find_gz3d_files(REAL):
        galaxy = read_gz3d(path)
        burned = burn_hexagon(dark, int(galaxy.metadata["IFUDESIGNSIZE"][0]))
        real_w, real_h = _extent(_magenta(galaxy.image))
        ours_w, ours_h = _extent(_magenta(burned))
        assert abs(ours_w - real_w) <= 2 and abs(ours_h - real_h) <= 2
        core = burned[_magenta(burned)].astype(float)
        assert 150 < np.median(core[:, 0]) < 230 and np.median(core[:, 1]) < 60


def test_a_cutout_without_a_hexagon_is_left_alone():
    from galseg.gz3d import find_hexagon, paint_out_hexagon

    rng = np.random.default_rng(0)
    sky = rng.integers(0, 60, (256, 256, 3)).astype(np.uint8)
    assert find_hexagon(sky) is None
    assert paint_out_hexagon(sky) is sky
    assert paint_out_hexagon(sky, 37.0) is sky  # the metadata says 37, but nothing is burned in


def test_synthetic_galaxies_carry_their_bundles_hexagon_and_prepare_paints_it_out(tmp_path):
    from galseg.dataset import open_dataset, prepare
    from galseg.gz3d import _magenta, find_hexagon, ifu_design_size
    from galseg.synthetic import write_synthetic

    files = list(write_synthetic(tmp_path / "g", n=3, seed=4, size=256, workers=1))
    for path in files:
        galaxy = read_gz3d(path)
        assert find_hexagon(galaxy.image) == ifu_design_size(galaxy.metadata)
    for mode, left in (("paint", False), ("keep", True)):
        prepare(tmp_path / "g", tmp_path / mode, size=256, show_progress=False, hexagon=mode)
        data = open_dataset(tmp_path / mode)
        assert data.manifest["hexagon"] == mode
        images = np.asarray(data.array("images"))
        assert bool(_magenta(images).sum(axis=(1, 2)).min() > 50) is left


def _simple_by_hand(points: np.ndarray) -> bool:
    """The production rule pair by pair, in plain Python: the reference for the vectorised one."""
    pts = [tuple(p) for k, p in enumerate(points) if k == 0 or tuple(p) != tuple(points[k - 1])]
    segments = list(zip(pts[:-1], pts[1:], strict=True))

    def turn(p, q, r):
        v = float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))
        return int(v > 0) - int(v < 0)

    def on(p, q, r):
        return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])

    for i, (p1, q1) in enumerate(segments):
        for j in range(i + 2, len(segments)):
            if i == 0 and j == len(segments) - 1 and pts[0] == pts[-1]:
                continue  # a ring closes on its start
            p2, q2 = segments[j]
            o1, o2, o3, o4 = turn(p1, q1, p2), turn(p1, q1, q2), turn(p2, q2, p1), turn(p2, q2, q1)
            if o1 * o2 < 0 and o3 * o4 < 0:
                return False
            if (
                (o1 == 0 and on(p1, q1, p2))
                or (o2 == 0 and on(p1, q1, q2))
                or (o3 == 0 and on(p2, q2, p1))
                or (o4 == 0 and on(p2, q2, q1))
            ):
                return False
    return True


def test_the_simple_outline_test_agrees_with_a_pair_by_pair_reference():
    rng = np.random.default_rng(3)
    verdicts = []
    for _ in range(400):  # small integer grids: many touches, collinear runs, repeats and rings
        points = rng.integers(0, 5, (int(rng.integers(2, 9)), 2)).astype(float)
        if rng.random() < 0.2:
            points = np.vstack([points, points[:1]])
        verdicts.append(_simple_by_hand(points))
        assert is_simple_outline(points) == verdicts[-1], points.tolist()
    assert 0.1 < np.mean(verdicts) < 0.9  # both answers were tested


def test_the_gz3d_check_scores_arms_against_the_volunteers_and_the_hexagon(drawn):
    """A 'network' that marks what three volunteers drew has recall and precision 1 and nothing on
    the hexagon; one that marks the hexagon's line has every pixel on it and no precision."""
    from galseg.real import ON_HEXAGON_PX, gz3d_scores

    drawn3 = (drawn.spiral_votes >= 3).astype(np.float32)
    rows = gz3d_scores({"spiral": np.stack([drawn3, drawn3])}, drawn, (1, 3), cut=0.5)
    assert [r["TH"] for r in rows] == [1, 3]
    assert rows[1]["RECALL"] == pytest.approx(1.0) and rows[1]["PRECISION"] == pytest.approx(1.0)
    assert rows[1]["ARM_PX"] == int(drawn3.sum()) and rows[1]["ARM_PX_ON_HEXAGON"] == 0
    assert rows[0]["VOLUNTEER_ARM_PX"] > rows[1]["VOLUNTEER_ARM_PX"] > 0
    assert rows[1]["BAR_PX"] == 0 and rows[1]["VOLUNTEER_BAR_PX"] > 0  # no bar plane: no bar pixels
    line = (hexagon_distance(37, 525) <= 1.0).astype(np.float32)
    rows = gz3d_scores({"spiral": line[None], "bar": line[None]}, drawn, (3,), cut=0.5)
    assert rows[0]["ARM_PX_ON_HEXAGON"] == rows[0]["ARM_PX"] > 500 and rows[0]["BAR_PX"] == rows[0]["ARM_PX"]
    assert rows[0]["RECALL"] < 0.05 and rows[0]["PRECISION"] < 0.3  # the line crosses a few drawn arms
    assert ON_HEXAGON_PX >= 1.0


def test_real_files_cut_short_or_missing_an_hdu_are_error_rows_not_predictions(tmp_path):
    import gzip
    import io

    from astropy.io import fits

    from galseg.cli import main
    from galseg.outputs import read_catalogue

    raw = gzip.decompress(DRAWN.read_bytes())
    with fits.open(io.BytesIO(raw)) as hdul:
        where = [hdu.fileinfo() for hdu in hdul]
    broken = {
        "in_metadata": raw[: where[5]["datLoc"] + 100],  # cut inside HDU 5's table
        "in_outlines": raw[: where[8]["datLoc"] + where[8]["datSpan"] // 2],
        "no_last_hdu": raw[: where[10]["hdrLoc"]],  # ten HDUs of eleven, each whole
    }
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in broken.items():
        (folder / f"{name}.fits.gz").write_bytes(gzip.compress(data))
    (folder / "whole.fits.gz").write_bytes(DRAWN.read_bytes())
    assert main(["predict", str(folder), "--out", str(tmp_path / "out")]) == 1
    table = read_catalogue(tmp_path / "out" / "catalogue.ecsv")
    for name in broken:
        rows = table[[str(source).endswith(f"{name}.fits.gz") for source in table["SOURCE"]]]
        assert len(rows) == 1 and rows["TH"][0] == 0 and rows["ERROR"][0], name
    whole = table[[str(source).endswith("whole.fits.gz") for source in table["SOURCE"]]]
    assert len(whole) == 6 and not any(whole["ERROR"])
