"""Fetch the real GZ:3D files from the SDSS DR17 science archive: parallel, resumable, atomic.

The archive folder is a plain web directory listing; every ``*.fits.gz`` link in it is one
galaxy. A file lands under its final name only once all its bytes have arrived (checked against
Content-Length and gzip's own end marker), so a rerun skips complete files and retries the rest.
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin, urlparse

from galseg import GalsegError
from galseg import io as galseg_io
from galseg.io import atomic_write_bytes, gunzip, progress

DEFAULT_BASE_URL = "https://data.sdss.org/sas/dr17/manga/morphology/galaxyzoo3d/v4_0_0/"
"""The GZ:3D value-added catalogue's folder in the SDSS DR17 science archive."""
_LINK = re.compile(r'href="([^"?#]+\.fits\.gz)"', re.IGNORECASE)
TIMEOUT_S = 60
MAX_LISTING_BYTES = 16 * 2**20
"""The archive's listing page is about 3 MB; a larger answer is not a listing."""


def _check_url(url: str) -> None:
    """Only the web: a ``file:`` or other link would read this machine's files as 'downloads'."""
    if urlparse(url).scheme not in ("http", "https"):
        raise GalsegError(f"--base-url {url}: use an http:// or https:// address")


def list_remote(base_url: str) -> list[str]:
    """File names linked from the archive folder's listing page, in a stable order (bare names:
    every file is fetched from this same folder, whatever the page links to)."""
    _check_url(base_url)
    try:
        with urllib.request.urlopen(base_url, timeout=TIMEOUT_S) as response:
            page = response.read(MAX_LISTING_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise GalsegError(f"{base_url}: cannot read the archive listing ({exc})") from exc
    if len(page) > MAX_LISTING_BYTES:  # read no further: a cut listing would be a silent partial one
        raise GalsegError(
            f"{base_url}: the listing is over {MAX_LISTING_BYTES >> 20} MB; not an archive folder"
        )
    page = page.decode("utf-8", "replace")
    names = sorted({os.path.basename(link) for link in _LINK.findall(page)})
    if not names:
        raise GalsegError(f"{base_url}: the listing links no .fits.gz files (wrong --base-url?)")
    return names


def fetch(url: str, target: Path, *, retries: int = 3, backoff_s: float = 1.0) -> str | None:
    """Download ``url`` to ``target`` atomically; return None on success, else the last error."""
    error = None
    for attempt in range(retries):
        try:
            limit = galseg_io.MAX_FILE_BYTES
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                expected = response.headers.get("Content-Length")
                if expected is not None and int(expected) > limit:
                    return f"{int(expected)} bytes is over galseg's {limit >> 20} MB limit"
                data = response.read(limit + 1)
            if len(data) > limit:
                return f"over galseg's {limit >> 20} MB limit"
            if expected is not None and len(data) != int(expected):
                raise OSError(f"got {len(data)} of {expected} bytes")
            gunzip(data, name=url)  # whole, and inflating within the budget, or an error
            atomic_write_bytes(target, data)
            return None
        except GalsegError as exc:
            error = str(exc)
            if "inflates to over" in error:
                return error  # a bomb is a bomb every time: no retries
            time.sleep(backoff_s * attempt)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            time.sleep(backoff_s * attempt)
    return error


def download(
    out: str | os.PathLike[str],
    *,
    base_url: str = DEFAULT_BASE_URL,
    limit: int | None = None,
    workers: int = 8,
    retries: int = 3,
    show_progress: bool = True,
) -> dict[str, str]:
    """Fetch the GZ:3D files into ``out``, skipping those already complete.

    Returns ``{file name: error}`` for the files that still failed after ``retries`` tries.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    names = list_remote(base_url)[:limit]
    todo = [n for n in names if not (out / n).is_file()]
    failures: dict[str, str] = {}

    def one(name: str) -> tuple[str, str | None]:
        return name, fetch(urljoin(base_url, name), out / name, retries=retries)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for name, error in progress(
            pool.map(one, todo), total=len(todo), desc="download", enabled=show_progress
        ):
            if error:
                failures[name] = error
    return failures
