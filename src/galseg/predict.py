"""Prediction, the survey path: image files in, arm (and bar) masks and one catalogue out.

Every input gets ``masks/NAME-HASH.fits.gz`` (masks, probabilities, statistics and arms on the
input's own grid, with its WCS) and rows in the catalogue. NAME is the file's stem made safe,
HASH a digest of the input's absolute path, so two inputs never share an output. Each mask
file records the run, the input and its size and time stamp; a rerun reuses a mask only when
all of them still match, so resuming never mixes in another run's or another file's results.
One unreadable or odd input becomes an error row, never the end of the run.

The stages have their own modules: reading an input (:mod:`galseg.inputs`), one galaxy's
catalogue columns (:mod:`galseg.measure`), the mask files and the catalogue (:mod:`galseg.outputs`);
this one runs them over many files, overlapping reading, the network and the writing, resumably.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from astropy.table import Table, vstack
from threadpoolctl import threadpool_limits

from galseg import GalsegError, __version__
from galseg.footprint import drop_pieces, footprint, galaxy_region, outside_galaxy
from galseg.inference import CUT, Predictor, by_structure, clean_image, combine_zooms, zoom_views
from galseg.inputs import InputImage, expand_inputs, output_name, printable, read_input
from galseg.io import atomic_write_bytes, die_with_parent, gzip_bytes, one_line, only_writer, progress
from galseg.measure import galaxy_statistics
from galseg.orient import (
    IDENTITY,
    Orientation,
    canonical,
    measurements_back,
    stats_back,
    turn_back,
    turn_source,
)
from galseg.outputs import (
    CATALOGUE_FORMATS,
    STAT_COLUMNS,
    arms_table,
    catalogue_rows,
    mask_file_bytes,
    read_catalogue,
    read_mask_file,
    stat_columns,
    write_table,
)


class _Inputs(torch.utils.data.Dataset):
    """Reads and shrinks one input per item in DataLoader workers, so reading overlaps the nets."""

    def __init__(self, paths: Sequence[Path], predictor: Predictor) -> None:
        # plain values only: the workers must not carry the networks
        self.paths, self.size, self.zooms = list(paths), predictor.size, predictor.zooms
        self.hexagon = predictor.hexagon

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        try:
            item = read_input(path)
            # predicted and measured in the one orientation that a mirror or a turn of this image
            # reaches too (galseg.orient), so a mirrored galaxy gets mirrored answers
            orientation = canonical(item.image)
            item = turn_source(item, orientation)
            # measured, drawn and predicted alike on the image the network sees
            item = replace(item, image=clean_image(item.image, self.hexagon, item.ifu))
            area = footprint(item.image)
            return {
                "i": i,
                "input": item,
                "orientation": orientation,
                "small": zoom_views(item.image, self.zooms, self.size),
                "footprint": area,
                "region": galaxy_region(item.image, area),
                "error": None,
            }
        except GalsegError as exc:
            return {"i": i, "error": printable(str(exc))}
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a survey
            return {"i": i, "error": printable(f"{path}: {type(exc).__name__}: {one_line(exc)}")}


def _input_stamp(path: Path) -> tuple[int, int]:
    """(bytes, modification time in ns) of an input: a changed file is predicted again."""
    try:
        stat = path.stat()
    except OSError:
        return -1, -1
    return int(stat.st_size), int(stat.st_mtime_ns)


def _finished(target: Path, run_id: str, stamp: tuple[int, int]) -> tuple | None:
    """What the catalogue needs of ``target`` (:func:`read_mask_file`'s first five) if it is this run's
    complete, undamaged output for this very input, else None (redo it). The whole file is read
    once, here, so a damaged mask file left by a crash or a bad disk is redone instead of stopping
    the rerun, and the catalogue needs no second reading."""
    if not target.exists():
        return None
    try:
        *back, header = read_mask_file(target)
    except (OSError, ValueError, EOFError, KeyError, TypeError, zlib.error):
        return None
    same = header.get("RUNID") == run_id and (header.get("INBYTES"), header.get("INMTIME")) == stamp
    return tuple(back) if same else None


@dataclass
class _Finish:
    """What the pool needs to finish one galaxy after the network: its probabilities at the
    network's size (small to send; one set per zoom), the input, and where the result goes."""

    index: int
    source: InputImage
    footprint: np.ndarray
    region: np.ndarray | None  # the galaxy's own region (galseg.footprint): pieces not reaching it go
    p_small: np.ndarray
    spread_small: np.ndarray | None
    thresholds: tuple[int, ...]
    structures: tuple[str, ...]
    zooms: tuple[float, ...]
    target: Path
    overlay_path: Path | None
    overlay: Callable[..., object] | None
    measure: bool
    provenance: dict
    cut: float = CUT
    orientation: Orientation = IDENTITY  # how ``source`` was turned (galseg.orient); answers turn back


def _post_worker() -> None:
    die_with_parent()
    # the network has the cores; each post worker takes one, for torch and for the BLAS under
    # numpy and scipy (the disc fit's least squares): threads of several processes spinning
    # against each other cut predict from 11.7 to 3.3 galaxies/s (benchmarks/bench_predict.py)
    torch.set_num_threads(1)
    threadpool_limits(1)


def _turned_back(orientation: Orientation, source: InputImage, planes, spread, stats: Table, geometry, arms):
    """One galaxy's answers, found on its canonical orientation, in the input's own: the image
    and the planes exactly, the statistics (in place), the disc and the arms."""
    if orientation == IDENTITY:
        return source, planes, spread, geometry, arms
    source = turn_source(source, orientation, back=True)

    def back(by: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return (
            None
            if by is None
            else {s: np.ascontiguousarray(turn_back(p, orientation, axes=(1, 2))) for s, p in by.items()}
        )

    stats_back(orientation, stats)
    geometry, arms = measurements_back(orientation, geometry, arms, source.image.shape[:2])
    return source, back(planes), back(spread), geometry, arms


def _finish(work: _Finish) -> tuple[int, tuple | None, str | None, bool]:
    """Masks, statistics, arms and bar of one galaxy, written whole; returns (index, what the
    catalogue needs, None, False) or (index, None, the error, whether it stops the run: a write
    that failed, e.g. a full disk, would fail for every galaxy after it)."""
    try:
        source, thresholds, shape = work.source, work.thresholds, work.source.image.shape[:2]

        p = combine_zooms(work.p_small, work.zooms, shape)  # network grid -> input grid
        drop = outside_galaxy(p, work.region, work.cut)

        def full(values: np.ndarray) -> dict[str, np.ndarray]:  # (P, H, W) -> by structure, pieces dropped
            return by_structure(drop_pieces(values, drop), work.structures, len(thresholds))

        planes = full(p)
        # the spread: the largest over the zooms, the most doubtful view
        spread = (
            full(combine_zooms(work.spread_small, work.zooms, shape))
            if work.spread_small is not None
            else None
        )
        stats, geometry, arms = galaxy_statistics(
            source, planes, thresholds, work.footprint, measure=work.measure, cut=work.cut
        )
        source, planes, spread, geometry, arms = _turned_back(
            work.orientation, source, planes, spread, stats, geometry, arms
        )
        measured_arms = geometry is not None and "spiral" in planes
        arm_rows = arms_table(arms) if measured_arms else None
        data = mask_file_bytes(
            planes,
            thresholds,
            source.wcs,
            stats,
            work.provenance,
            spread=spread,
            arms=arm_rows,
            geometry=geometry,
            cut=work.cut,
        )
        try:
            atomic_write_bytes(work.target, gzip_bytes(data))
        except OSError as exc:
            return work.index, None, f"{work.target}: cannot write: {exc.strerror or one_line(exc)}", True
        if work.overlay is not None:
            bar = planes.get("bar")
            first = planes.get("spiral", bar)
            work.overlay(
                source,
                first,
                thresholds,
                work.overlay_path,
                arms=arms,
                geometry=geometry,
                bar=bar,
                cut=work.cut,
            )
        return (
            work.index,
            (
                source.name,
                source.image.shape[:2],
                stats.as_array(),  # plain structured arrays: a Table per galaxy would grow memory
                arm_rows.as_array() if arm_rows is not None else None,
                source.warning,
            ),
            None,
            False,
        )
    except OSError as exc:  # the overlay's file
        return work.index, None, f"{exc.filename or work.overlay_path}: cannot write: {exc.strerror}", True
    except Exception as exc:  # noqa: BLE001 - one odd galaxy must not lose the others
        return (
            work.index,
            None,
            f"{printable(work.source.source)}: {type(exc).__name__}: {printable(one_line(exc))}",
            False,
        )


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    catalogue: str = "catalogue.ecsv",
    batch_size: int = 16,
    workers: int = 2,
    overlay: Callable[..., object] | None = None,
    tta: bool = False,
    measure_arms_too: bool = True,
    show_progress: bool = True,
) -> Table:
    """Predict every input into ``out``: ``masks/NAME-HASH.fits.gz`` per galaxy and one catalogue.

    Inputs this run already wrote are skipped (rerun to resume); unreadable ones get a row with
    their error. Under torchrun each rank takes every world-th input and writes its own catalogue
    part; rank 0 merges the parts in input order. Returns the merged catalogue (rank 0) or this
    rank's. With ``tta`` the masks come from the mean over the eight orientations and an
    ``UNCERT`` HDU holds their spread. A MaNGA hexagon in an input is painted out or kept as
    :attr:`Predictor.hexagon` says.
    """
    out = Path(out)
    suffix = "".join(Path(catalogue).suffixes[-1:]).lower()
    if suffix not in CATALOGUE_FORMATS or Path(catalogue).name != catalogue:
        raise GalsegError(f"--catalogue {catalogue}: a file name ending .ecsv, .csv, .fits or .parquet")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    paths = expand_inputs(inputs)
    if not paths:
        raise GalsegError("no inputs: give image files, folders or text files listing them")
    # two predicts into one folder would each write a catalogue of their own inputs only
    with only_writer(out, f".predict-rank{rank}.lock", what="galseg predict"):
        return _predict_files(
            predictor,
            paths,
            out,
            rank,
            world,
            catalogue,
            batch_size,
            workers,
            overlay,
            tta,
            measure_arms_too,
            show_progress,
        )


def _predict_files(
    predictor: Predictor,
    paths: list[Path],
    out: Path,
    rank: int,
    world: int,
    catalogue: str,
    batch_size: int,
    workers: int,
    overlay: Callable[..., object] | None,
    tta: bool,
    measure_arms_too: bool,
    show_progress: bool,
) -> Table:
    """:func:`predict_files` once the inputs are known and ``out`` is this process's."""
    (out / "masks").mkdir(parents=True, exist_ok=True)
    names = [output_name(p) for p in paths]
    stamps = [_input_stamp(p) for p in paths]
    run_id = _run_id(predictor, tta=tta, measure=measure_arms_too)
    mine = list(range(rank, len(paths), world))
    # inputs an earlier run finished: read back once, their rows come from there
    done_before = {i: _finished(out / "masks" / f"{names[i]}.fits.gz", run_id, stamps[i]) for i in mine}
    written: dict[int, tuple] = {i: back for i, back in done_before.items() if back is not None}
    todo = [i for i in mine if i not in written]
    errors: dict[int, str] = {}
    thresholds = predictor.thresholds
    loader = torch.utils.data.DataLoader(
        _Inputs([paths[i] for i in todo], predictor),
        batch_size=None,
        num_workers=workers,
        collate_fn=lambda item: item,
        prefetch_factor=4 if workers else None,
        worker_init_fn=die_with_parent if workers else None,
    )
    bar = progress(total=len(todo), desc="predict", enabled=show_progress and rank == 0)
    batch: list[dict] = []
    # the work after the network (upsampling, statistics, arms, writing) runs in a pool of
    # `workers` processes while the network takes the next batch; with workers=0, in this process
    context = multiprocessing.get_context("spawn") if torch.cuda.is_initialized() else None  # no CUDA forks
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_post_worker) if workers else None
    pending: set[Future] = set()

    def job(item: dict, p: np.ndarray, spread: np.ndarray | None) -> _Finish:
        index = todo[item["i"]]
        source = item["input"]
        return _Finish(
            index=index,
            source=source,
            footprint=item["footprint"],
            region=item["region"],
            p_small=p,
            spread_small=spread,
            thresholds=thresholds,
            structures=predictor.structures,
            zooms=predictor.zooms,
            target=out / "masks" / f"{names[index]}.fits.gz",
            overlay_path=out / "overlays" / f"{names[index]}.png" if overlay is not None else None,
            overlay=overlay,
            measure=measure_arms_too,
            cut=predictor.cut,
            orientation=item["orientation"],
            provenance={
                "GALSEG": __version__,
                "RUN": printable(str(predictor.run)),
                "RUNID": run_id,
                "NAME": source.name,
                "SOURCE": printable(os.path.abspath(source.source)),
                "INBYTES": stamps[index][0],
                "INMTIME": stamps[index][1],
                "WARNING": source.warning,  # read back by a rerun that finds this file done
            },
        )

    def collect(done: Future | _Finish) -> None:
        index, result, error, fatal = done.result() if isinstance(done, Future) else _finish(done)
        if fatal:
            raise GalsegError(f"{error}; free space and rerun the same command (files written are kept)")
        if error is not None:
            errors[index] = error
        else:
            written[index] = result
        bar.update()

    def flush() -> None:
        if not batch:
            return
        small = np.concatenate([b["small"] for b in batch])  # every zoom of every input
        if tta:
            p_small, spread_small = predictor.tta_probabilities(small, batch_size=batch_size)
        else:
            p_small, spread_small = predictor.probabilities(small, batch_size=batch_size), None
        z = len(predictor.zooms)
        p_small = p_small.reshape(len(batch), z, *p_small.shape[1:])
        spread_small = spread_small.reshape(len(batch), z, *spread_small.shape[1:]) if tta else None
        for j, item in enumerate(batch):
            work = job(item, p_small[j], spread_small[j] if spread_small is not None else None)
            if pool is None:
                collect(work)
                continue
            pending.add(pool.submit(_finish, work))
            while len(pending) > 4 * max(workers, 1):  # bounded memory: wait for the oldest
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for done in finished:
                    pending.discard(done)
                    collect(done)
        batch.clear()

    try:
        for item in loader:
            if item["error"] is not None:
                errors[todo[item["i"]]] = item["error"]
                bar.update()
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        flush()
        for done in list(pending):
            collect(done)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    bar.close()

    part, arm_part = catalogue_rows(
        paths, names, mine, errors, written, out, stat_columns(predictor.structures)
    )
    return _write_catalogue(
        part, arm_part, out, catalogue, predictor, run_id, rank=rank, world=world, arms=measure_arms_too
    )


def _run_id(predictor: Predictor, *, tta: bool, measure: bool) -> str:
    """A digest of everything that decides a mask file's content: a rerun reuses a file only
    when it matches (the catalogue's columns too: parts written with other columns are redone,
    never mixed in)."""
    text = (
        f"{predictor.run_id}:{'tta' if tta else 'plain'}:{','.join(map(str, predictor.thresholds))}"
        f":{'+'.join(predictor.structures)}:{'measured' if measure else 'masks'}"
        f":zoom{','.join(map(str, predictor.zooms))}:cut{predictor.cut}:hexagon-{predictor.hexagon}"
        f":{','.join(STAT_COLUMNS)}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_catalogue(
    part: Table,
    arm_part: Table,
    out: Path,
    catalogue: str,
    predictor: Predictor,
    run_id: str,
    *,
    rank: int,
    world: int,
    arms: bool,
) -> Table:
    """Write the catalogue (and the arms table, when arms were measured) from every rank's rows:
    with several ranks each writes its part, rank 0 gathers them in input order and writes the
    whole; returns this rank's table (the whole on rank 0)."""
    suffix = "".join(Path(catalogue).suffixes[-1:]).lower()
    if world > 1:
        parts = out / "parts"
        parts.mkdir(exist_ok=True)
        write_table(part, parts / f"rank{rank:04d}.ecsv")
        write_table(arm_part, parts / f"arms_rank{rank:04d}.ecsv")
        dist.barrier()
        if rank != 0:
            return part
        part = vstack([read_catalogue(parts / f"rank{r:04d}.ecsv") for r in range(world)])
        part.sort(["ORDER", "TH"])
        arm_part = vstack([read_catalogue(parts / f"arms_rank{r:04d}.ecsv") for r in range(world)])
        arm_part.sort(["ORDER", "TH", "ARM"])
    # short upper-case keys: they become FITS header cards when the catalogue is FITS
    for table in (part, arm_part):
        table.meta.update(
            {
                "GALSEG": __version__,
                "RUN": printable(str(predictor.run))[-60:],
                "RUNID": run_id,
                "HEAD": predictor.head,
                "THRESHS": ",".join(map(str, predictor.thresholds)),
                "TARGET": "+".join(predictor.structures),
                "CUT": predictor.cut,
            }
        )
    write_table(part, out / catalogue)
    if arms and "spiral" in predictor.structures:
        write_table(arm_part, out / f"arms{suffix}")
    return part
