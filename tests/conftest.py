"""Shared fixtures: small synthetic GZ:3D sets, generated once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

SMALL_SIZE = 96  # px: small enough for fast tests, large enough for arms to be drawn


@pytest.fixture(scope="session")
def gz3d_dir(tmp_path_factory):
    """Sixty small synthetic GZ:3D files (seed 7): a mix of spirals and arm-less galaxies."""
    from galseg.synthetic import write_synthetic

    out = tmp_path_factory.mktemp("gz3d")
    list(write_synthetic(out, n=60, seed=7, size=SMALL_SIZE, workers=1))
    return out
