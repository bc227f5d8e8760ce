"""Hostile and unusual input: every case gives a correct result or one line naming the file and the
problem, the good inputs of the same batch are still done, and nothing from a file runs as code."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table
from PIL import Image

import galseg.io
from galseg import GalsegError
from galseg.cli import main
from galseg.dataset import open_dataset
from galseg.gz3d import find_gz3d_files, read_gz3d
from galseg.inference import load
from galseg.inputs import expand_inputs, output_name
from galseg.outputs import read_catalogue
from galseg.predict import predict_files
from galseg.train import load_checkpoint


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def _shifted_cutouts(tmp_path: Path, cutout: np.ndarray, n: int, step: int, axis: int) -> Path:
    """A folder ``in`` of ``n`` PNGs, the cutout rolled by ``step`` pixels more each time."""
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(n):
        _png(folder / f"g{k:02d}.png", np.roll(cutout, step * k, axis=axis))
    return folder


@pytest.fixture(scope="module")
def cutout(gz3d_dir) -> np.ndarray:
    return read_gz3d(find_gz3d_files(gz3d_dir)[0]).image[:64, :64].copy()


def _predict(run, inputs, out, **kwargs):
    return predict_files(load(run, device="cpu"), inputs, out, workers=0, show_progress=False, **kwargs)


def _one_line_error(capsys, status, *needles):
    err = capsys.readouterr().err.strip()
    assert status in (1, 2) and err.count("\n") == 0 and err.startswith("galseg: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


# ----------------------------------------------------------------------------- predict


def test_resumed_catalogue_reads_has_arms_back_as_booleans(trained_run, cutout, tmp_path):
    folder = _shifted_cutouts(tmp_path, cutout, 3, 7, axis=1)
    first = _predict(trained_run, [folder], tmp_path / "out")
    again = _predict(trained_run, [folder], tmp_path / "out")  # every row read back from the files
    third = _predict(trained_run, [folder], tmp_path / "out")
    for table in (first, again, third, read_catalogue(tmp_path / "out" / "catalogue.ecsv")):
        assert table["HAS_ARMS"].dtype == bool
        np.testing.assert_array_equal(table["HAS_ARMS"], table["ARM_PIXELS"] > 0)
    assert list(first["HAS_ARMS"]) == list(third["HAS_ARMS"])


def test_outputs_never_collide_and_record_their_input(trained_run, cutout, tmp_path):
    images = {
        "x.png": cutout,
        "x_2.png": np.flipud(cutout),
        "sub0/x.png": np.fliplr(cutout),
        "sub1/x.png": np.rot90(cutout).copy(),
    }
    for name, pixels in images.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        _png(tmp_path / name, pixels)
    paths = [tmp_path / name for name in images]
    table = _predict(trained_run, paths, tmp_path / "out")
    outputs = list(dict.fromkeys(table["OUTPUT"]))
    assert len(outputs) == 4
    for path, output in zip(paths, outputs, strict=True):
        header = fits.getheader(tmp_path / "out" / output, 0)
        assert header["SOURCE"] == str(path.resolve())
        with fits.open(tmp_path / "out" / output) as hdul:
            assert hdul["PROB"].data.shape[1:] == (64, 64)


def test_another_run_into_the_same_folder_predicts_again(trained_run, dataset_dir, cutout, tmp_path):
    from galseg.train import TrainConfig, train

    png = _png(tmp_path / "g.png", cutout)
    _predict(trained_run, [png], tmp_path / "out")
    target = next((tmp_path / "out" / "masks").iterdir())
    first_run = fits.getheader(target, 0)["RUNID"]
    other = tmp_path / "other"
    train(
        TrainConfig(
            dataset=str(dataset_dir), out=str(other), preset="tiny", epochs=1, steps_per_epoch=1, seed=5
        ),
        log=lambda line: None,
    )
    _predict(other, [png], tmp_path / "out")
    assert fits.getheader(target, 0)["RUNID"] != first_run  # not reused: another run made it
    _png(png, np.flipud(cutout))  # the input itself changed
    os.utime(png, ns=(time.time_ns(), time.time_ns() + 10**9))
    before = target.stat().st_mtime_ns
    _predict(other, [png], tmp_path / "out")
    assert target.stat().st_mtime_ns != before


def test_odd_file_names_are_predicted_and_catalogued(trained_run, cutout, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["galaxÿ Ω.png", "new\nline.png", "a" * 240 + ".png", "plain.png"]
    for name in names:
        _png(folder / name, cutout)
    for catalogue in ("cat.ecsv", "cat.fits", "cat.csv"):
        table = _predict(trained_run, [folder], tmp_path / catalogue, catalogue=catalogue)
        assert len(set(table["ORDER"])) == 4 and set(table["ERROR"]) == {""}
        back = read_catalogue(tmp_path / catalogue / catalogue)
        assert len(back) == len(table) and all(s.isascii() and "\n" not in s for s in back["SOURCE"])


def test_a_list_file_in_any_encoding_finds_its_files(cutout, tmp_path):
    name = "café.png"
    _png(tmp_path / name, cutout)
    listing = tmp_path / "list.txt"
    listing.write_bytes(
        b"# latin-1, not UTF-8\n" + name.encode("utf-8") + b"\n" + "caf\xe9.png".encode("latin-1")
    )
    found = expand_inputs([listing])
    assert found[0].is_file() and len(found) == 2  # the second is missing: an error row later
    assert output_name(found[0]) != output_name(found[1])


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A 400-byte PNG that declares width x height: decoding it would take gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 1000)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
    return path


def test_huge_tiny_odd_and_bomb_inputs_become_error_rows(trained_run, cutout, tmp_path, monkeypatch):
    good = _png(tmp_path / "good.png", cutout)
    huge = _png_header_only(tmp_path / "huge.png", 20000, 20000)
    tiny = _png(tmp_path / "tiny.png", cutout[:1, :1])
    flat = _png(tmp_path / "flat.png", np.full((40, 40, 3), 17, np.uint8))
    bomb = tmp_path / "bomb.fits.gz"
    bomb.write_bytes(gzip.compress(b"\0" * (3 * 2**20), compresslevel=1))
    monkeypatch.setattr(galseg.io, "MAX_INFLATED_BYTES", 2**20)  # a 3 MB bomb against a 1 MB budget
    table = _predict(trained_run, [good, huge, tiny, flat, bomb], tmp_path / "out")
    errors = {int(r["ORDER"]): r["ERROR"] for r in table if r["ERROR"]}
    assert set(errors) == {1, 2, 4}
    assert "over galseg's limit" in errors[1]
    assert "too small" in errors[2] and "inflates to over 1 MB" in errors[4]
    assert set(table[table["ORDER"] == 3]["WARNING"]) == {"the image is constant: nothing to find"}
    assert (table[table["ORDER"] == 0]["ERROR"] == "").all()


def test_a_checkpoint_cannot_run_code(trained_run, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    hostile = tmp_path / "run"
    shutil.copytree(trained_run, hostile)
    torch.save({"model": Payload()}, hostile / "th3" / "best.pt")
    with pytest.raises(GalsegError, match="best.pt: refused: it holds objects other than tensors") as err:
        load(hostile, device="cpu")
    assert not marker.exists()
    assert "weights_only" not in str(err.value)  # never torch's advice to turn the protection off
    checkpoint = load_checkpoint(trained_run / "th3" / "best.pt")[1]
    assert isinstance(checkpoint["environment"]["torch"], str)  # plain values only


@pytest.mark.parametrize(
    "damage",
    ["run.json garbage", "run.json empty object", "checkpoint truncated", "checkpoint missing"],
)
def test_damaged_runs_are_one_line_errors(trained_run, cutout, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    if damage == "run.json garbage":
        (run / "run.json").write_bytes(b"\xff\x00{not json")
    elif damage == "run.json empty object":
        (run / "run.json").write_text("{}")
    elif damage == "checkpoint truncated":
        data = (run / "th1" / "best.pt").read_bytes()
        (run / "th1" / "best.pt").write_bytes(data[: len(data) // 2])
    else:
        (run / "th1" / "best.pt").unlink()
    png = _png(tmp_path / "g.png", cutout)
    status = main(["predict", str(run), str(png), "--out", str(tmp_path / "out"), "--device", "cpu"])
    _one_line_error(capsys, status, str(run))


@pytest.fixture(scope="module")
def multi_run(dataset_dir, tmp_path_factory):
    """A tiny six-plane (ordinal, arms only) network, trained for two steps."""
    from galseg.train import TrainConfig, train

    out = tmp_path_factory.mktemp("multi") / "run"
    config = TrainConfig(
        dataset=str(dataset_dir),
        out=str(out),
        preset="tiny",
        head="multi",
        epochs=1,
        batch_size=8,
        steps_per_epoch=2,
    )
    train(config, log=lambda line: None)
    return out


def _lie(record: dict, how: str, run: Path, outside: Path) -> None:
    if how == "unit outside the run":
        outside.mkdir(exist_ok=True)
        shutil.copy(run / "multi" / "best.pt", outside / "best.pt")
        record["units"] = {"../outside": record["units"]["multi"]}
    elif how == "unit an absolute path":
        record["units"] = {str(outside): record["units"]["multi"]}
    elif how == "one threshold for six planes":
        record["units"] = {"multi": [3]}
    elif how == "seven thresholds":
        record["units"] = {"multi": [1, 2, 3, 4, 5, 6, 6]}
    elif how == "bars said, arms computed":
        record["config"]["target"] = "both"
    elif how == "a 20000 px training size":
        record["dataset_manifest"]["size"] = 20000
    elif how == "a binary unit in a multi run":
        record["units"] = {"th3": [3]}


@pytest.mark.parametrize(
    "how",
    [
        "unit outside the run",
        "unit an absolute path",
        "one threshold for six planes",
        "seven thresholds",
        "bars said, arms computed",
        "a 20000 px training size",
        "a binary unit in a multi run",
    ],
)
def test_a_lying_run_record_is_refused_before_anything_is_loaded(multi_run, cutout, tmp_path, capsys, how):
    run = tmp_path / "run"
    shutil.copytree(multi_run, run)
    record = json.loads((run / "run.json").read_text())
    _lie(record, how, run, tmp_path / "outside")
    (run / "run.json").write_text(json.dumps(record))
    png = _png(tmp_path / "g.png", cutout)
    status = main(["predict", str(run), str(png), "--out", str(tmp_path / "out"), "--device", "cpu"])
    _one_line_error(capsys, status, "run.json")
    assert not (tmp_path / "out" / "masks").exists() or not list((tmp_path / "out" / "masks").iterdir())


def test_a_deeply_nested_run_record_is_one_line(multi_run, cutout, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(multi_run, run)
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    png = _png(tmp_path / "g.png", cutout)
    status = main(["predict", str(run), str(png), "--out", str(tmp_path / "out"), "--device", "cpu"])
    _one_line_error(capsys, status, "run.json", "nested too deeply")


@pytest.mark.parametrize("args", [{"depth": 60}, {"base_width": 4096}, {"in_channels": 900}])
def test_a_checkpoint_asking_for_a_giant_network_is_refused_before_allocating(multi_run, tmp_path, args):
    checkpoint = torch.load(multi_run / "multi" / "best.pt", weights_only=True)
    checkpoint["model_args"] = {**checkpoint["model_args"], **args}
    torch.save(checkpoint, tmp_path / "best.pt")
    with pytest.raises(GalsegError, match="best.pt: U-Net .* must be"):
        load_checkpoint(tmp_path / "best.pt")


# ----------------------------------------------------------------------------- sizes a file claims


def _with_card(raw: bytes, hdu: int, key: str, value: int | str) -> bytes:
    """FITS bytes with one header card of HDU ``hdu`` given a new value, nothing else moved."""
    with fits.open(io.BytesIO(raw)) as hdul:
        start = hdul.fileinfo(hdu)["hdrLoc"]
    at = raw.index(key.ljust(8).encode() + b"= ", start)
    card = f"{key:<8}= {value!s:>20}".ljust(80).encode()
    return raw[:at] + card + raw[at + 80 :]


def _plain_fits(cards: list[str], data: bytes) -> bytes:
    header = "".join(c.ljust(80) for c in [*cards, "END"]).encode()
    pad = lambda b, fill: b + fill * (-len(b) % 2880)  # noqa: E731
    return pad(header, b" ") + pad(data, b"\0")


IMAGE_CARDS = [
    "SIMPLE  =                    T",
    "BITPIX  =                    8",
    "NAXIS   =                    2",
    "NAXIS1  =                   64",
    "NAXIS2  =                   64",
]


def test_files_whose_headers_claim_too_much_are_refused_before_reading(gz3d_dir, trained_run, tmp_path):
    gz3d = gzip.decompress(find_gz3d_files(gz3d_dir)[0].read_bytes())
    pixels = np.random.default_rng(0).integers(0, 255, 64 * 64, dtype=np.uint8).tobytes()
    compressed = fits.CompImageHDU(np.zeros((3, 64, 64), np.uint8))
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(buffer)
    cube = buffer.getvalue()
    for key, value in (("ZNAXIS1", 4096), ("ZNAXIS2", 4096), ("ZNAXIS3", 120)):
        cube = _with_card(cube, 1, key, value)
    extension = _plain_fits(
        [
            "XTENSION= 'IMAGE   '",
            "BITPIX  =                    8",
            "NAXIS   =                    0",
            "PCOUNT  =                    0",
            "GCOUNT  =                    1",
        ],
        b"",
    )
    files = {
        "rows.fits": (_with_card(gz3d, 5, "NAXIS2", 10**9), "HDU 5 says its data is"),
        "cards.fits": (
            _plain_fits([*IMAGE_CARDS, *["COMMENT padding"] * 12_000], pixels),
            "more than 10,000 cards",
        ),
        "hdus.fits": (
            _plain_fits(
                IMAGE_CARDS[:1] + ["BITPIX  =                    8", "NAXIS   =                    0"], b""
            )
            + extension * 1_200,
            "more than 1,000 HDUs",
        ),
        "cube.fits": (cube, "compressed image of 4096 x 4096 x 120"),
        "naxis.fits": (
            _plain_fits([*IMAGE_CARDS[:3], "NAXIS1  =                  -64", IMAGE_CARDS[4]], pixels),
            "negative",
        ),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    good = _png(tmp_path / "good.png", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    table = _predict(trained_run, [*(tmp_path / n for n in files), good], tmp_path / "out")
    errors = {Path(r["SOURCE"]).name: r["ERROR"] for r in table}
    for name, (_, reason) in files.items():
        assert reason in errors[name] and name in errors[name], errors[name]
    assert errors["good.png"] == ""


def test_prepare_skips_a_gz3d_file_whose_table_claims_a_billion_rows(gz3d_dir, tmp_path, capsys):
    folder = tmp_path / "gz3d"
    shutil.copytree(gz3d_dir, folder)
    victim = find_gz3d_files(folder)[0]
    victim.write_bytes(gzip.compress(_with_card(gzip.decompress(victim.read_bytes()), 9, "NAXIS2", 10**9)))
    assert main(["prepare", str(folder), "--out", str(tmp_path / "ds"), "--size", "32"]) == 1
    said = capsys.readouterr()
    assert "59 prepared, 1 skipped" in said.out and "HDU 9 says its data is" in said.err


def _edited_gz3d(source: Path, target: Path, edit) -> Path:
    """A copy of the GZ:3D file ``source`` with ``edit(hdul)`` applied."""
    with fits.open(io.BytesIO(gzip.decompress(source.read_bytes()))) as hdul:
        copy = fits.HDUList([hdu.copy() for hdu in hdul])
    edit(copy)
    buffer = io.BytesIO()
    copy.writeto(buffer)
    target.write_bytes(gzip.compress(buffer.getvalue()))
    return target


def _with_outline(points: list) -> callable:
    def edit(hdul):
        table = Table(hdul[9].data)
        table["spiral_paths"] = [json.dumps([points])] + [str(t) for t in table["spiral_paths"][1:]]
        hdul[9] = fits.BinTableHDU(table)

    return edit


def _text_ra(hdul):
    table = Table(hdul[5].data)
    table["ra"] = table["ra"].astype(str)
    hdul[5] = fits.BinTableHDU(table)


def _votes(value: float):
    def edit(hdul):
        hdul[3].data[10, 10] = value

    return edit


def _many_stars(hdul):
    table = Table(hdul[7].data)
    hdul[7] = fits.BinTableHDU(Table({c: np.ones(300_000, table[c].dtype) for c in table.colnames}))


RING = [[48 + 20 * np.cos(a), 48 + 20 * np.sin(a)] for a in np.linspace(0, 6.28, 25_000)]


@pytest.mark.parametrize(
    "edit, reason",
    [
        (_votes(70_000.0), "HDU 3 (spiral-arm mask) counts 70,000 at a pixel"),
        (_text_ra, "HDU 5 column ra is text, not a number"),
        (
            _with_outline([[10, 10], ["NaN", 20], [20, 20]]),
            "HDU 9 holds an outline with coordinates that are not finite",
        ),
        (_with_outline([[10, 10], [1e300, 20], [20, 20]]), "far outside the image"),
        (
            _with_outline([[round(x, 2), round(y, 2)] for x, y in RING]),
            "HDU 9 holds an outline of 25,000 points",
        ),
        (
            _with_outline([[10, 10], [20], [20, 20]]),
            "HDU 9 holds outlines that are not lists of [x, y] points",
        ),
        (_many_stars, "HDU 7 has 300,000 rows (galseg reads 10,000)"),
    ],
    ids=["votes", "text-ra", "nan", "1e300", "long-outline", "ragged", "stars"],
)
def test_prepare_skips_values_out_of_range_naming_the_hdu(gz3d_dir, tmp_path, capsys, edit, reason):
    folder = tmp_path / "gz3d"
    folder.mkdir()
    files = find_gz3d_files(gz3d_dir)
    for good in files[1:4]:
        shutil.copy(good, folder / good.name)
    _edited_gz3d(files[0], folder / "bad.fits.gz", edit)
    assert main(["prepare", str(folder), "--out", str(tmp_path / "ds"), "--size", "32"]) == 1
    said = capsys.readouterr()
    assert "3 prepared, 1 skipped" in said.out
    assert "bad.fits.gz" in said.err and reason in said.err, said.err
    with pytest.raises(GalsegError, match=re.escape(reason)):
        read_gz3d(folder / "bad.fits.gz")


def test_prepare_with_nothing_readable_is_one_line_not_a_traceback(gz3d_dir, tmp_path, capsys):
    folder = tmp_path / "gz3d"
    folder.mkdir()
    _edited_gz3d(find_gz3d_files(gz3d_dir)[0], folder / "bad.fits.gz", _votes(-1.0))
    assert main(["prepare", str(folder), "--out", str(tmp_path / "ds"), "--size", "32"]) == 2
    _one_line_error(capsys, 2, "none of its 1 GZ:3D file(s) could be prepared", "bad.fits.gz")


# ----------------------------------------------------------------------------- datasets and arguments


@pytest.mark.parametrize(
    "damage",
    ["images truncated", "images replaced", "catalogue garbage", "manifest garbage", "manifest gone"],
)
def test_damaged_or_half_written_datasets_are_refused(dataset_dir, tmp_path, damage):
    data = tmp_path / "ds"
    shutil.copytree(dataset_dir, data)
    if damage == "images truncated":
        raw = (data / "images.npy").read_bytes()
        (data / "images.npy").write_bytes(raw[: len(raw) - 100])
    elif damage == "images replaced":  # a re-prepare killed after the new arrays landed
        np.save(data / "images.npy", np.zeros((7, 32, 32, 3), np.uint8))
    elif damage == "catalogue garbage":
        (data / "catalogue.ecsv").write_bytes(b"# %ECSV 1.0\n\x00\x01garbage")
    elif damage == "manifest garbage":
        (data / "manifest.json").write_text("[1, 2")
    else:
        (data / "manifest.json").unlink()
    with pytest.raises(GalsegError) as err:
        open_dataset(data)
    assert str(data) in str(err.value) and "\n" not in str(err.value)


def test_re_preparing_uncommits_the_old_dataset_first(gz3d_dir, dataset_dir, tmp_path, monkeypatch):
    import galseg.dataset as dataset

    data = tmp_path / "ds"
    shutil.copytree(dataset_dir, data)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "_save_chunk", killed)
    with pytest.raises(KeyboardInterrupt):
        dataset.prepare(gz3d_dir, data, size=32, seed=1, show_progress=False)
    with pytest.raises(GalsegError, match="unfinished"):
        open_dataset(data)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "{ds}", "--out", "{tmp}/r", "--batch-size", "0"], "--batch-size: 0 is too small"),
        (["train", "{ds}", "--out", "{tmp}/r", "--lr", "-1"], "--lr: -1 must be a finite number above 0"),
        (["train", "{ds}", "--out", "{tmp}/r", "--lr", "nan"], "--lr: nan must be a finite number"),
        (["train", "{ds}", "--out", "{tmp}/r", "--epochs", "0"], "--epochs: 0 is too small"),
        (
            ["train", "{ds}", "--out", "{tmp}/r", "--steps-per-epoch", "0"],
            "--steps-per-epoch: 0 is too small",
        ),
        (["train", "{ds}", "--out", "{tmp}/file"], "is a file, not a folder"),
        (["train", "{tmp}/nothing", "--out", "{tmp}/r"], "not a prepared galseg dataset"),
        (["prepare", "{gz3d}", "--out", "{tmp}/file"], "is a file, not a folder"),
        (
            ["prepare", "{gz3d}", "--out", "{tmp}/p", "--test-fraction", "1.5"],
            "--test-fraction: 1.5 must lie",
        ),
        (["predict", "{run}", "{tmp}", "--out", "{tmp}/p", "--workers", "-1"], "--workers: -1 is too small"),
        (["predict", "{run}", "{tmp}", "--out", "{tmp}/file"], "is a file, not a folder"),
        (["evaluate", "{run}", "--figure-threshold", "9", "--out", "{tmp}/e"], "--figure-threshold 9"),
        (["synth", "--out", "{tmp}/s", "--n", "0"], "--n: 0 is too small"),
        (["synth", "--out", "{tmp}/s", "--seed", "-1"], "--seed: -1 is too small"),
        (["synth", "--out", "{tmp}/s", "--size", "100000"], "--size: 100000 is too large"),
        (["prepare", "{gz3d}", "--out", "{tmp}/p", "--size", "65536"], "--size: 65536 is too large"),
        (["train", "{ds}", "--out", "{tmp}/r", "--thresholds", "1-"], "--thresholds '1-'"),
        (["ready-model", "--work", "{tmp}/file"], "--work {tmp}/file: is a file, not a folder"),
    ],
)
def test_user_mistakes_are_one_line(args, needle, dataset_dir, gz3d_dir, trained_run, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    values = {"ds": dataset_dir, "gz3d": gz3d_dir, "run": trained_run, "tmp": tmp_path}
    start = time.monotonic()
    status = main([a.format(**values) for a in args])
    _one_line_error(capsys, status, needle.format(**values))
    assert time.monotonic() - start < 30  # refused before the work, not after it
    assert not (tmp_path / "r" / "run.json").exists()


def test_a_bad_train_command_does_not_block_the_corrected_one(dataset_dir, tmp_path, capsys):
    out = tmp_path / "r"
    common = ["train", str(dataset_dir), "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1"]
    _one_line_error(capsys, main([*common, "--preset", "bogus"]), "bogus")
    assert main([*common, "--preset", "tiny", "--thresholds", "3"]) == 0
    assert (out / "th3" / "best.pt").is_file()


# ----------------------------------------------------------------------------- kills


def _galseg(*args: str) -> subprocess.Popen:
    """``galseg ARGS`` in its own process, its stderr kept in memory-free temporary storage."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "galseg.cli", *args], stdout=subprocess.DEVNULL, stderr=log, env=env
    )
    process.log = log  # type: ignore[attr-defined]
    return process


def _finish(process: subprocess.Popen) -> None:
    """Wait for ``process`` and fail with its stderr unless it succeeded."""
    status = process.wait(timeout=300)
    process.log.seek(0)  # type: ignore[attr-defined]
    err = process.log.read().decode(errors="replace")  # type: ignore[attr-defined]
    process.log.close()  # type: ignore[attr-defined]
    assert status == 0, err[-2000:]


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.log.close()  # type: ignore[attr-defined]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _assert_same_predictions(out: Path, clean: Path) -> None:
    """``out`` holds byte for byte what the uninterrupted run wrote into ``clean``, and no leftovers."""
    for name in ("catalogue.ecsv", "arms.ecsv"):
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    for mask in (clean / "masks").iterdir():
        assert (out / "masks" / mask.name).read_bytes() == mask.read_bytes()
    assert not list(out.rglob("*.part"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's")
def test_killed_predict_resumes_to_identical_bytes_and_leaves_no_workers(trained_run, cutout, tmp_path):
    folder = _shifted_cutouts(tmp_path, cutout, 24, 3, axis=0)
    common = [str(trained_run), str(folder), "--device", "cpu", "--batch-size", "2", "--workers", "2"]
    _finish(_galseg("predict", *common, "--out", str(tmp_path / "clean")))
    killed_out = tmp_path / "killed"
    victim = _galseg("predict", *common, "--out", str(killed_out))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((killed_out / "masks").glob("*.fits.gz"))) < 4:
        time.sleep(0.05)
    _kill(victim)
    time.sleep(1.0)
    assert _processes_mentioning(str(killed_out)) == []  # the loader's workers died with it
    assert len(list((killed_out / "masks").glob("*.fits.gz"))) < 24
    _finish(_galseg("predict", *common, "--out", str(killed_out)))
    _assert_same_predictions(killed_out, tmp_path / "clean")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's")
def test_killed_prepare_resumes_to_identical_bytes(gz3d_dir, dataset_dir, tmp_path):
    out = tmp_path / "ds"
    victim = _galseg("prepare", str(gz3d_dir), "--out", str(out), "--size", "32", "--workers", "2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "parts" / "settings.json").exists():
        time.sleep(0.01)
    time.sleep(0.3)
    _kill(victim)
    time.sleep(1.0)
    assert _processes_mentioning(str(out)) == []
    _finish(_galseg("prepare", str(gz3d_dir), "--out", str(out), "--size", "32", "--workers", "2"))
    for name in ("images.npy", "spiral.npy", "bar.npy", "catalogue.ecsv"):
        assert (out / name).read_bytes() == (dataset_dir / name).read_bytes(), name
    ours, theirs = (json.loads((d / "manifest.json").read_text()) for d in (out, dataset_dir))
    ours.pop("source_dir"), theirs.pop("source_dir")
    assert ours == theirs


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's")
def test_killed_train_resumes_to_the_same_weights_and_curves(dataset_dir, tmp_path):
    common = [str(dataset_dir), "--preset", "tiny", "--head", "multi", "--epochs", "4", "--batch-size", "8"]
    common += ["--device", "cpu", "--seed", "3"]
    _finish(_galseg("train", *common, "--out", str(tmp_path / "clean")))
    out = tmp_path / "killed"
    victim = _galseg("train", *common, "--out", str(out))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "multi" / "history.json").exists():
        time.sleep(0.05)
    _kill(victim)
    time.sleep(1.0)
    assert _processes_mentioning(str(out)) == []
    history = json.loads((out / "multi" / "history.json").read_text())
    assert len(history) < 4  # it really was stopped part way
    _finish(_galseg("train", *common, "--out", str(out), "--resume"))
    clean, resumed = (load_checkpoint(d / "multi" / "last.pt")[1] for d in (tmp_path / "clean", out))
    for name, weights in clean["model"].items():
        torch.testing.assert_close(resumed["model"][name], weights, rtol=1e-6, atol=1e-7, msg=name)
    losses = [[h["train_loss"], h["eval_loss"]] for h in clean["state"]["history"]]
    again = [[h["train_loss"], h["eval_loss"]] for h in resumed["state"]["history"]]
    np.testing.assert_allclose(again, losses, rtol=1e-6)
    assert not list(out.rglob("*.part"))


# ----------------------------------------------------------------------------- damaged outputs, full disks


def test_a_damaged_mask_file_is_redone_and_a_warning_survives_the_rerun(trained_run, cutout, tmp_path):
    folder = _shifted_cutouts(tmp_path, cutout, 3, 5, axis=1)
    _png(folder / "flat.png", np.full((64, 64, 3), 40, np.uint8))  # predicted, with a WARNING
    clean, out = tmp_path / "clean", tmp_path / "out"
    _predict(trained_run, [folder], clean)
    _predict(trained_run, [folder], out)
    masks = sorted((out / "masks").iterdir())
    whole = [m.read_bytes() for m in masks]
    masks[0].write_bytes(whole[0][:-50])  # cut short
    damaged = bytearray(whole[1])
    damaged[len(damaged) // 2] ^= 0xFF  # one byte changed in the middle
    masks[1].write_bytes(bytes(damaged))
    fits_bytes = gzip.decompress(whole[2])
    card = fits_bytes.index(b"NAME    =")
    bad_card = fits_bytes[:card] + b"NA\x01E   =" + fits_bytes[card + 9 :]  # not a FITS keyword
    masks[2].write_bytes(gzip.compress(bad_card))
    table = _predict(trained_run, [folder], out)
    assert [m.read_bytes() for m in masks] == whole
    assert (out / "catalogue.ecsv").read_bytes() == (clean / "catalogue.ecsv").read_bytes()
    assert set(table["WARNING"][table["NAME"] == "flat"]) == {"the image is constant: nothing to find"}
    again = _predict(trained_run, [folder], out)  # nothing to redo: every row read back
    assert set(again["WARNING"][again["NAME"] == "flat"]) == {"the image is constant: nothing to find"}
    assert (out / "catalogue.ecsv").read_bytes() == (clean / "catalogue.ecsv").read_bytes()


def _galseg_with_files_of_at_most(limit: int, *args: str) -> subprocess.CompletedProcess:
    """``galseg ARGS`` in a child whose every file stops at ``limit`` bytes (RLIMIT_FSIZE; Python
    ignores SIGXFSZ, so the write fails with EFBIG), as on a nearly full disk."""
    import resource

    def limit_it() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "galseg.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=limit_it,
        timeout=300,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE as on Linux")
def test_a_write_that_fails_stops_predict_and_the_rerun_completes(trained_run, cutout, tmp_path):
    folder = _shifted_cutouts(tmp_path, cutout, 4, 9, axis=0)
    common = ["predict", str(trained_run), str(folder), "--device", "cpu", "--workers", "0"]
    clean, out = tmp_path / "clean", tmp_path / "full"
    assert main([*common, "--out", str(clean)]) == 0
    smallest = min(m.stat().st_size for m in (clean / "masks").iterdir())
    done = _galseg_with_files_of_at_most(smallest // 2, *common, "--out", str(out))
    err = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert err and err[-1].startswith("galseg: error:") and "cannot write" in err[-1], done.stderr
    assert "Traceback" not in done.stderr
    assert not (out / "catalogue.ecsv").exists()  # no catalogue claiming a complete run
    assert not list(out.rglob("*.part"))
    assert main([*common, "--out", str(out)]) == 0
    assert (out / "catalogue.ecsv").read_bytes() == (clean / "catalogue.ecsv").read_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE as on Linux")
def test_a_catalogue_that_cannot_be_written_is_one_line_and_not_rc_0(trained_run, cutout, tmp_path):
    folder = _shifted_cutouts(tmp_path, cutout, 12, 4, axis=1)
    common = ["predict", str(trained_run), str(folder), "--device", "cpu", "--workers", "0"]
    clean = tmp_path / "clean"
    assert main([*common, "--out", str(clean)]) == 0
    largest = max(m.stat().st_size for m in (clean / "masks").iterdir())
    assert (clean / "catalogue.ecsv").stat().st_size > largest + 1  # the limit below hits it alone
    done = _galseg_with_files_of_at_most(largest + 1, *common, "--out", str(tmp_path / "full"))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("galseg: error:"), done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's")
def test_predict_killed_twice_and_interrupted_resumes_to_identical_bytes(trained_run, cutout, tmp_path):
    folder = _shifted_cutouts(tmp_path, cutout, 30, 2, axis=1)
    common = [str(trained_run), str(folder), "--device", "cpu", "--batch-size", "2", "--workers", "2"]
    _finish(_galseg("predict", *common, "--out", str(tmp_path / "clean")))
    out = tmp_path / "stopped"
    for how in (signal.SIGKILL, signal.SIGINT, signal.SIGKILL):
        before = len(list((out / "masks").glob("*.fits.gz")))
        victim = _galseg("predict", *common, "--out", str(out))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list((out / "masks").glob("*.fits.gz"))) < before + 3:
            time.sleep(0.02)
        os.kill(victim.pid, how)
        status = victim.wait(timeout=60)
        victim.log.close()  # type: ignore[attr-defined]
        assert status in (-signal.SIGKILL, 130, 0), status  # Ctrl-C: "interrupted", exit 130
        time.sleep(0.5)
        assert _processes_mentioning(str(out)) == []
    _finish(_galseg("predict", *common, "--out", str(out)))
    _assert_same_predictions(out, tmp_path / "clean")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's")
def test_synth_killed_and_interrupted_resumes_to_identical_bytes(tmp_path):
    common = ["--n", "40", "--size", "64", "--seed", "4", "--workers", "2"]
    _finish(_galseg("synth", "--out", str(tmp_path / "clean"), *common, "--no-preview"))
    out = tmp_path / "stopped"
    for how in (signal.SIGKILL, signal.SIGINT):
        before = len(list(out.glob("*.fits*")))
        victim = _galseg("synth", "--out", str(out), *common, "--no-preview")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(out.glob("*.fits*"))) < before + 4:
            time.sleep(0.01)
        os.kill(victim.pid, how)
        victim.wait(timeout=60)
        victim.log.close()  # type: ignore[attr-defined]
        time.sleep(0.3)
        assert _processes_mentioning(str(out)) == []
    _finish(_galseg("synth", "--out", str(out), *common, "--no-preview"))
    clean = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert sorted(p.name for p in out.iterdir()) == clean
    for name in clean:
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
