"""The documentation as a user meets it: it builds without warnings, its commands run or parse as
written, and every file, HDU and column that predict writes is documented (and nothing else)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from galseg.cli import EXAMPLES, build_parser, main
from galseg.outputs import read_catalogue

ROOT = Path(__file__).resolve().parents[1]
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of one language in a Markdown file."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def section(path: Path, heading: str) -> Path:
    """One ``## heading`` section of a Markdown file, as a file of its own (for code_blocks)."""
    text = path.read_text()
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"section-{os.getpid()}-{abs(hash(heading))}.md"
    out.write_text(text[start : end if end > 0 else None])
    return out


def command_lines(path: Path) -> list[str]:
    """Every galseg command line in a file's shell blocks, comments dropped, as galseg's argv."""
    lines = []
    for block in code_blocks(path, "sh"):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("galseg "):
                lines.append(line[len("galseg ") :])
            elif "-m galseg.cli " in line:
                lines.append(line.split("-m galseg.cli ", 1)[1])
    return lines


def documented_names(heading: str) -> set[str]:
    """The backticked names in the first column of a table under ``heading`` in docs/outputs.md."""
    names = set()
    for row in section(ROOT / "docs" / "outputs.md", heading).read_text().splitlines():
        first = row.split("|")[1] if row.startswith("|") else ""
        names.update(re.findall(r"`([A-Za-z_0-9]+)`", first))
    return names


def test_the_documentation_builds_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "docs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "api.html").read_text()
    assert "galseg.predict.predict_files" in api and "galseg.inference.load_ready" in api  # from docstrings


def test_the_readme_is_short_and_the_user_documents_keep_no_diary():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    diary = re.compile(r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth) round\b", re.I)
    for path in USER_DOCS:
        assert not diary.search(path.read_text()), path.name


def test_every_galseg_command_in_the_documents_parses_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    seen = 0
    for path in USER_DOCS:
        for line in command_lines(path):
            try:
                parser.parse_args(shlex.split(line))
            except SystemExit as exc:
                pytest.fail(f"{path.name}: `galseg {line}` does not parse ({exc.code})")
            seen += 1
    assert seen >= 10  # the README and the guide hold more than that: the blocks were found


def test_every_subcommand_help_ends_with_a_worked_example_that_parses(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    assert set(commands) == set(EXAMPLES)
    for name, sub in commands.items():
        assert sub.format_help().rstrip().endswith(EXAMPLES[name])
        parser.parse_args(shlex.split(EXAMPLES[name])[1:])
    assert main(["predict", "--help"]) == 0
    assert "example:\n  galseg predict" in capsys.readouterr().out


def test_the_readme_quick_start_runs_as_written(tmp_path):
    quick_start = section(ROOT / "README.md", "Quick start")
    (shell,) = code_blocks(quick_start, "sh")
    (python,) = code_blocks(quick_start, "python")
    # `. .venv/bin/activate` as in a clone where make made .venv: this interpreter's
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "activate").write_text(f'PATH="{Path(sys.executable).parent}:$PATH"\n')
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", shell], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    catalogue = read_catalogue(tmp_path / "masks" / "catalogue.ecsv")
    assert len(catalogue) == 4 * 6 and (catalogue["ERROR"] == "").all()
    assert len(list((tmp_path / "masks" / "overlays").glob("*.png"))) == 4
    done = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HAS_ARMS" in done.stdout and "{1: " in done.stdout


@pytest.fixture(scope="module")
def arms_and_bar_prediction(dataset_dir, gz3d_dir, tmp_path_factory):
    """An arms-and-bar network's prediction, with TTA, of a GZ:3D file (WCS, clicks) and a PNG."""
    import matplotlib.image as mpimg

    from galseg.gz3d import find_gz3d_files, read_gz3d

    work = tmp_path_factory.mktemp("documented")
    run = work / "run"
    train = ["train", str(dataset_dir), "--out", str(run), "--preset", "tiny", "--head", "multi"]
    train += [
        "--target",
        "both",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ]
    assert main(train) == 0
    gz3d = find_gz3d_files(gz3d_dir)[0]
    png = work / "cutout.png"
    mpimg.imsave(png, read_gz3d(gz3d).image)
    out = work / "pred"
    predict = ["predict", str(run), str(gz3d), str(png), "--out", str(out), "--tta", "--cut", "0.01"]
    assert main([*predict, "--device", "cpu", "--workers", "0"]) == 0
    return out


FITS_STRUCTURE = re.compile(
    r"(SIMPLE|BITPIX|EXTEND|XTENSION|PCOUNT|GCOUNT|EXTNAME|TFIELDS|NAXIS\d*|T(TYPE|FORM|DIM|UNIT|NULL)\d+"
    r"|WCSAXES|C(TYPE|RVAL|RPIX|DELT|UNIT)\d|CD\d_\d|PC\d_\d|LONPOLE|LATPOLE|RADESYS|EQUINOX|MJDREF|DATEREF)$"
)


def test_every_hdu_card_and_column_predict_writes_is_documented(arms_and_bar_prediction):
    out = arms_and_bar_prediction
    hdus, cards, stats, arms = set(), set(), set(), set()
    for path in sorted((out / "masks").glob("*.fits.gz")):
        with fits.open(path) as hdul:
            for hdu in hdul:
                hdus.add(re.sub(r"(MASK_TH|BAR_TH)\d$", r"\1n", hdu.name))
                cards |= {
                    re.sub(r"THRESH\d$", "THRESHk", k) for k in hdu.header if not FITS_STRUCTURE.match(k)
                }
            stats |= set(hdul["STATS"].columns.names)
            arms |= set(hdul["ARMS"].columns.names)
    catalogue = set(read_catalogue(out / "catalogue.ecsv").colnames)
    arms_table = set(read_catalogue(out / "arms.ecsv").colnames)
    assert hdus == documented_names("The mask file")
    assert cards == documented_names("Header cards")
    assert catalogue == documented_names("The catalogue")
    assert arms_table == documented_names("The arms table")
    assert stats <= catalogue and arms <= arms_table
