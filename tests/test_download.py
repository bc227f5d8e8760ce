"""The real download code, against a local HTTP server on 127.0.0.1 serving synthetic files."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from pathlib import Path

import pytest

from galseg import GalsegError
from galseg.download import download
from galseg.gz3d import find_gz3d_files, read_gz3d


class _Archive(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; the file named in ``flaky`` breaks off mid-transfer ``failures`` times."""

    flaky: str = ""
    failures = {"left": 0}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        name = Path(self.path).name
        if name == self.flaky and self.failures["left"] > 0:
            self.failures["left"] -= 1
            data = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def archive(gz3d_dir, tmp_path):
    files = find_gz3d_files(gz3d_dir)[:6]
    served = tmp_path / "served"
    served.mkdir()
    for f in files:
        (served / f.name).write_bytes(f.read_bytes())
    handler = type("Handler", (_Archive,), {"flaky": files[2].name, "failures": {"left": 10}})

    def factory(*args, **kwargs):
        return handler(*args, directory=str(served), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served, handler
    finally:
        server.shutdown()
        server.server_close()


def test_download_retries_resumes_and_never_leaves_partial_files(archive, tmp_path):
    url, served, handler = archive
    out = tmp_path / "out"
    failures = download(out, base_url=url, workers=3, retries=2, show_progress=False)
    assert list(failures) == [handler.flaky]  # broke off every time: reported, not saved
    size = (served / handler.flaky).stat().st_size
    assert f"got {size // 2} of {size} bytes" in failures[handler.flaky]  # the break is named
    assert not (out / handler.flaky).exists()
    assert not list(out.glob(".*part"))
    complete = {p.name for p in out.iterdir()}
    assert len(complete) == 5 and all(read_gz3d(out / n).image.shape[2] == 3 for n in complete)

    handler.failures["left"] = 1  # the server recovers after one more break
    stamps = {n: (out / n).stat().st_mtime_ns for n in complete}
    assert download(out, base_url=url, workers=3, retries=3, show_progress=False) == {}
    assert (out / handler.flaky).read_bytes() == (served / handler.flaky).read_bytes()
    assert all((out / n).stat().st_mtime_ns == stamps[n] for n in complete)  # not fetched again


def test_limit_and_bad_listing(archive, tmp_path):
    url, _, handler = archive
    handler.failures["left"] = 0
    assert download(tmp_path / "two", base_url=url, limit=2, show_progress=False) == {}
    assert len(list((tmp_path / "two").iterdir())) == 2
    with pytest.raises(GalsegError, match="cannot read the archive listing"):
        download(tmp_path / "x", base_url=url + "missing/", show_progress=False)


def test_a_listing_over_the_limit_is_refused_not_cut_short(archive, tmp_path, monkeypatch):
    from galseg import download as module

    url, _, handler = archive
    handler.failures["left"] = 0
    page = urllib.request.urlopen(url).read()
    monkeypatch.setattr(module, "MAX_LISTING_BYTES", len(page) - 1)  # one byte short
    with pytest.raises(GalsegError, match="the listing is over"):
        download(tmp_path / "cut", base_url=url, show_progress=False)
    assert not (tmp_path / "cut").exists() or not list((tmp_path / "cut").iterdir())
    monkeypatch.setattr(module, "MAX_LISTING_BYTES", len(page))  # exactly the limit: read whole
    assert len(module.list_remote(url)) == 6


def test_only_web_addresses_are_followed(tmp_path, capsys):
    from galseg.cli import main

    status = main(["download", "--out", str(tmp_path / "d"), "--base-url", "file:///etc/"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "use an http:// or https:// address" in err and "\n" not in err


def test_an_oversized_or_bomb_file_fails_alone(archive, tmp_path, monkeypatch):
    import gzip

    import galseg.io

    url, served, _ = archive
    bomb = served / "zz_bomb.fits.gz"
    bomb.write_bytes(gzip.compress(b"\0" * (3 * 2**20)))
    monkeypatch.setattr(galseg.io, "MAX_INFLATED_BYTES", 2**20)
    failures = download(tmp_path / "got", base_url=url, workers=2, show_progress=False, retries=1)
    assert set(failures) >= {"zz_bomb.fits.gz"} and "inflates to over 1 MB" in failures["zz_bomb.fits.gz"]
    assert not (tmp_path / "got" / "zz_bomb.fits.gz").exists()
    assert len(list((tmp_path / "got").glob("*.fits.gz"))) >= 5
