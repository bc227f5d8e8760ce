"""Reading and writing GZ:3D files exactly as the data model lays them out."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits

from galseg import GalsegError
from galseg.gz3d import (
    N_HDUS,
    find_gz3d_files,
    rasterise_outlines,
    read_gz3d,
    votes_from_paths,
    write_gz3d,
)
from galseg.synthetic import synthesize


@pytest.fixture(scope="module")
def spiral():
    """The first spiral of seed 3 at a small size."""
    for index in range(40):
        galaxy, truth = synthesize(index, seed=3, size=80)
        if truth.n_arms and galaxy.spiral_votes.max() > 0:
            return galaxy
    raise AssertionError("no drawn spiral in 40 galaxies")


@pytest.mark.parametrize("name", ["g.fits", "g.fits.gz"])
def test_round_trip_keeps_every_hdu(tmp_path, spiral, name):
    path = write_gz3d(tmp_path / name, spiral)
    back = read_gz3d(path)
    assert back.image.dtype == np.uint8 and back.image.shape == (80, 80, 3)
    np.testing.assert_array_equal(back.image, spiral.image)
    for field in ("center_mask", "star_mask", "spiral_votes", "bar_votes"):
        np.testing.assert_array_equal(getattr(back, field), getattr(spiral, field))
        assert getattr(back, field).dtype == np.float64
    for field in ("metadata", "center_clusters", "star_clusters", "clicks", "spiral_paths", "bar_paths"):
        ours, theirs = getattr(spiral, field), getattr(back, field)
        assert ours.colnames == theirs.colnames, field
        for column in ours.colnames:
            a, b = np.asarray(ours[column]), np.asarray(theirs[column])
            if a.dtype.kind == "S":
                a = np.char.strip(a.astype(str))
                b = np.char.strip(b.astype(str))
            np.testing.assert_array_equal(a, b, err_msg=f"{field}.{column}")
    np.testing.assert_allclose(back.wcs.wcs.crval, spiral.wcs.wcs.crval)
    np.testing.assert_allclose(back.wcs.pixel_scale_matrix, spiral.wcs.pixel_scale_matrix)
    assert back.mangaid == spiral.mangaid
    assert back.n_classifications == len(spiral.spiral_paths)


def test_file_layout_is_the_data_model(tmp_path, spiral):
    path = write_gz3d(tmp_path / "g.fits.gz", spiral)
    with fits.open(path) as hdul:
        hdul.verify("exception")  # standard-conforming, as astropy judges it
        assert len(hdul) == N_HDUS
        assert hdul[0].data.shape == (80, 80, 3) and hdul[0].header["BITPIX"] == 8
        assert all(hdul[i].header["BITPIX"] == -64 for i in range(1, 5))
        assert all(isinstance(hdul[i], fits.BinTableHDU) for i in range(5, 11))
        assert not any("EXTNAME" in hdul[i].header for i in range(N_HDUS))
        formats = dict(zip(hdul[5].columns.names, hdul[5].columns.formats, strict=True))
        assert formats["ra"] == "E" and formats["MANGAID"] == "11A" and formats["nsa_id"] == "K"
        assert formats["GZ_total_classifications"] == "I" and formats["explorer_link"] == "90A"
        assert hdul[9].columns.names == ["classification_id", "time_stamp", "spiral_paths"]
        # CD terms negative on both axes; the WCS sits at the image centre
        assert hdul[1].header["CD1_1"] < 0 and hdul[1].header["CD2_2"] < 0


def test_cfitsio_and_astropy_read_the_hand_written_tables_exactly(tmp_path, spiral):
    """The six tables are serialised by galseg (benchmarks/bench_fits_tables.py: 11x faster
    than astropy's writer); two independent FITS readers must get every value back."""
    fitsio = pytest.importorskip("fitsio")
    path = write_gz3d(tmp_path / "g.fits", spiral)
    tables = (
        spiral.metadata,
        spiral.center_clusters,
        spiral.star_clusters,
        spiral.clicks,
        spiral.spiral_paths,
        spiral.bar_paths,
    )
    with fits.open(path) as hdul:
        for hdu, ours in enumerate(tables, start=5):
            by_cfitsio = fitsio.read(str(path), ext=hdu)
            by_astropy = hdul[hdu].data
            assert list(by_cfitsio.dtype.names) == ours.colnames
            assert len(by_cfitsio) == len(ours) == len(by_astropy)
            for column in ours.colnames:
                expected = np.asarray(ours[column])
                for got in (np.asarray(by_cfitsio[column]), np.asarray(by_astropy[column])):
                    if expected.dtype.kind in "SU":
                        np.testing.assert_array_equal(
                            np.char.rstrip(got.astype(str)), np.char.rstrip(expected.astype(str))
                        )
                    else:
                        assert got.dtype.kind == expected.dtype.kind, (hdu, column)
                        np.testing.assert_array_equal(got, expected, err_msg=f"HDU {hdu} {column}")


def test_wcs_puts_the_galaxy_at_the_centre(spiral):
    ra, dec = spiral.wcs.wcs_pix2world([[39.5, 39.5]], 0)[0]
    assert ra == pytest.approx(spiral.metadata["ra"][0], abs=1e-5)
    assert dec == pytest.approx(spiral.metadata["dec"][0], abs=1e-5)
    # one pixel to the right is 0.099 arcsec to the west: RA falls
    ra_right, _ = spiral.wcs.wcs_pix2world([[40.5, 39.5]], 0)[0]
    assert (ra_right - ra) * np.cos(np.radians(dec)) * 3600 == pytest.approx(-0.099, rel=1e-3)


def _break(tmp_path, spiral, how):
    good = write_gz3d(tmp_path / "good.fits", spiral)
    bad = tmp_path / f"bad_{how}.fits"
    if how == "not_fits":
        bad.write_text("this is a JPEG, honest\n" * 200)
    elif how == "truncated_gzip":
        data = gzip.compress(good.read_bytes())
        bad = bad.with_suffix(".fits.gz")
        bad.write_bytes(data[: len(data) // 2])
    elif how == "truncated_fits":
        bad.write_bytes(good.read_bytes()[:40000])
    else:
        with fits.open(good) as hdul:
            hdus = [h.copy() for h in hdul]
        if how == "missing_hdus":
            hdus = hdus[:5]
        elif how == "image_not_rgb":
            hdus[0] = fits.PrimaryHDU(spiral.image[:, :, 0])
        elif how == "mask_wrong_shape":
            hdus[3] = fits.ImageHDU(np.zeros((40, 80)))
        elif how == "fractional_votes":
            hdus[3] = fits.ImageHDU(spiral.spiral_votes + 0.5)
        elif how == "metadata_column_missing":
            table = spiral.metadata.copy()
            table.remove_column("MANGAID")
            hdus[5] = fits.BinTableHDU(table)
        elif how == "image_is_float":
            hdus[0] = fits.PrimaryHDU(spiral.image.astype(np.float32))
        fits.HDUList(hdus).writeto(bad)
    return bad


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("not_fits", "not a readable GZ:3D FITS file"),
        ("truncated_gzip", "not a readable GZ:3D FITS file"),
        ("truncated_fits", "truncated"),
        ("missing_hdus", "has 5 HDUs"),
        ("image_not_rgb", "HDU 0 should be an H x W x 3"),
        ("image_is_float", "HDU 0 should be uint8"),
        ("mask_wrong_shape", "HDU 3 (spiral-arm mask) has shape (40, 80)"),
        ("fractional_votes", "HDU 3 should hold whole vote counts"),
        ("metadata_column_missing", "HDU 5 lacks column(s) MANGAID"),
    ],
)
def test_broken_files_are_named_with_their_problem(tmp_path, spiral, how, expected):
    bad = _break(tmp_path, spiral, how)
    with pytest.raises(GalsegError) as err:
        read_gz3d(bad)
    message = str(err.value)
    assert str(bad) in message and expected in message
    assert "\n" not in message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GalsegError, match="no such file"):
        read_gz3d(tmp_path / "nope.fits.gz")


def test_rasterise_counts_overlapping_outlines():
    square = np.array([[1.5, 1.5], [5.5, 1.5], [5.5, 5.5], [1.5, 5.5]])  # covers centres 2..5
    shifted = square + 2.0  # covers 4..7
    counts = rasterise_outlines([square, shifted], (10, 10))
    assert counts[2:6, 2:6].sum() >= 16 and counts[3, 3] == 1
    assert counts[4, 4] == 2 and counts[5, 5] == 2
    assert counts[7, 7] == 1 and counts[8, 8] == 0 and counts[1, 1] == 0
    assert counts.sum() == 32  # 16 + 16 pixel centres


def test_rasterise_matches_even_odd_rule_on_a_triangle():
    triangle = np.array([[0.0, 0.0], [9.0, 0.0], [0.0, 9.0]])
    counts = rasterise_outlines([triangle], (10, 10))
    i, j = np.mgrid[0:10, 0:10]
    strictly_inside = (j > 0) & (i >= 0) & (i + j < 9)
    # centres on the slanted edge may go either way; strictly inside ones must be counted
    assert counts[strictly_inside & (i > 0)].min() == 1
    assert counts[i + j > 9].max() == 0


def test_votes_re_rasterise_from_raw_outlines(spiral):
    again = votes_from_paths(spiral.spiral_paths["spiral_paths"], spiral.spiral_votes.shape)
    np.testing.assert_array_equal(again, spiral.spiral_votes)


def test_find_files_is_recursive_and_sorted(tmp_path, spiral):
    write_gz3d(tmp_path / "b" / "deep" / "x.fits.gz", spiral)
    write_gz3d(tmp_path / "a.fits", spiral)
    (tmp_path / "notes.txt").write_text("ignored")
    found = find_gz3d_files(tmp_path)
    assert [p.name for p in found] == ["a.fits", "x.fits.gz"]
    with pytest.raises(GalsegError, match="not a folder"):
        find_gz3d_files(tmp_path / "a.fits")


def test_reading_without_outlines_gives_the_same_pixels_and_still_checks_tables(tmp_path, spiral):
    path = write_gz3d(tmp_path / "g.fits.gz", spiral)
    light = read_gz3d(path, outlines=False)
    np.testing.assert_array_equal(light.spiral_votes, spiral.spiral_votes)
    assert light.n_classifications == len(spiral.spiral_paths) and light.spiral_paths is None
    bad = _break(tmp_path, spiral, "metadata_column_missing")
    with pytest.raises(GalsegError, match="HDU 5 lacks column"):
        read_gz3d(bad, outlines=False)
    with fits.open(path) as hdul:
        hdus = [h.copy() for h in hdul]
    hdus[9] = fits.BinTableHDU(spiral.spiral_paths["classification_id", "time_stamp"])
    fits.HDUList(hdus).writeto(tmp_path / "no_paths.fits")
    with pytest.raises(GalsegError, match="HDU 9 lacks column.s. spiral_paths"):
        read_gz3d(tmp_path / "no_paths.fits", outlines=False)


def test_small_tables_read_straight_from_the_bytes_match_astropy(tmp_path, spiral):
    """predict reads the metadata and cluster tables without astropy's column objects; every
    table of a file must come back as astropy reads it (values, kinds and widths)."""
    import io

    from astropy.table import Table

    from galseg.gz3d import _small_table
    from galseg.io import read_bytes

    raw = read_bytes(write_gz3d(tmp_path / "g.fits.gz", spiral))
    with fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False) as hdul:
        for index in range(5, N_HDUS):
            ours, theirs = _small_table(hdul[index], raw), Table(hdul[index].data)
            assert ours.colnames == theirs.colnames
            for column in theirs.colnames:
                a, b = np.asarray(ours[column]), np.asarray(theirs[column])
                assert (a.dtype.kind, a.dtype.itemsize) == (b.dtype.kind, b.dtype.itemsize), column
                np.testing.assert_array_equal(a, b, err_msg=f"HDU {index} {column}")


def test_hand_written_cards_and_images_are_what_astropy_writes():
    from galseg.gz3d import _card, image_bytes

    cases = [
        ("SIMPLE", True),
        ("NAXIS1", 525),
        ("INMTIME", np.int64(1764000000123456789)),
        ("THRESH", 3, "spiral where P(votes >= THRESH) > 0.5"),
        ("EXTNAME", "MASK_TH3"),
        ("SOURCE", "/data/o'brien/x.fits.gz"),
        ("WARNING", ""),
        ("SOURCE", "x" * 150),  # long text: astropy's CONTINUE cards
        ("CENTX", 12.25, "disc centre"),
    ]
    for card in cases:
        assert _card(*card) == fits.Card(*card).image
    data = np.arange(12, dtype=np.uint8).reshape(3, 4)
    blob = image_bytes(None, primary=True, cards=[("NAME", "g")]) + image_bytes(
        data, name="MASK_TH3", cards=[("THRESH", 3)]
    )
    hdul = fits.HDUList.fromstring(blob)
    hdul.verify("exception")
    assert hdul[0].header["NAME"] == "g" and hdul["MASK_TH3"].header["THRESH"] == 3
    np.testing.assert_array_equal(hdul["MASK_TH3"].data, data)


def test_reading_for_prediction_skips_the_vote_maps_but_checks_their_shapes(tmp_path, spiral):
    path = write_gz3d(tmp_path / "g.fits.gz", spiral)
    light = read_gz3d(path, outlines=False, votes=False)
    assert light.spiral_votes is None and light.bar_votes is None
    np.testing.assert_array_equal(light.image, spiral.image)
    assert light.mangaid == spiral.mangaid and len(light.center_clusters) == len(spiral.center_clusters)
    with fits.open(path) as hdul:
        hdul[3].data = np.zeros((40, 80))  # a spiral mask of the wrong shape
        hdul.writeto(tmp_path / "bad.fits")
    with pytest.raises(GalsegError, match="HDU 3 .*shape"):
        read_gz3d(tmp_path / "bad.fits", votes=False)
