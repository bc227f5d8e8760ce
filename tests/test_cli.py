"""The command line: each subcommand end to end, and user errors as one line with status 2."""

from __future__ import annotations

from galseg.cli import main
from galseg.gz3d import find_gz3d_files


def test_synth_writes_files_and_a_preview(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n", "3", "--size", "64", "--workers", "1"]) == 0
    assert len(find_gz3d_files(tmp_path)) == 3
    assert (tmp_path / "preview.png").stat().st_size > 10_000
    assert "3 synthetic galaxies" in capsys.readouterr().out


def test_user_error_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n", "1", "--size", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("galseg: error:") and "too small" in err and "\n" not in err
