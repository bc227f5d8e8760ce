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


@pytest.fixture(scope="session")
def dataset_dir(gz3d_dir, tmp_path_factory):
    """The sixty galaxies prepared at 32 px."""
    from galseg.dataset import prepare

    out = tmp_path_factory.mktemp("prepared") / "ds"
    prepare(gz3d_dir, out, size=32, show_progress=False)
    return out


@pytest.fixture(scope="session")
def trained_run(dataset_dir, tmp_path_factory):
    """A tiny network per threshold, trained for a few steps: enough to exercise every path."""
    from galseg.train import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "run"
    config = TrainConfig(
        dataset=str(dataset_dir), out=str(out), preset="tiny", epochs=2, batch_size=8, steps_per_epoch=3
    )
    train(config, log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def torchrun():
    """Run ``galseg ARGS...`` as two CPU processes under torchrun; fail with their stderr."""
    import subprocess
    import sys

    def run(*args: str) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "galseg.cli",
            *args,
            "--device",
            "cpu",
        ]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    return run
