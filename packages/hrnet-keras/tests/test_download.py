"""The download path, against an HTTP server on 127.0.0.1 that the test runs."""

import hashlib
import http.server
import threading

import pytest

from hrnet_keras import convert
from hrnet_keras.checkpoints import DownloadError, download
from hrnet_keras.configs import get_preset


class _Handler(http.server.BaseHTTPRequestHandler):
    files = {}  # path -> bytes
    cut = set()  # paths whose connection drops halfway

    def do_HEAD(self):  # noqa: N802
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_GET(self):  # noqa: N802
        self.do_HEAD()
        body = self.files.get(self.path)
        if body is None:
            return
        if self.path in self.cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()


def _serve(handler, path, body, cut=False):
    handler.files[path] = body
    if cut:
        handler.cut.add(path)


def test_good_file_downloads_and_checks(server, tmp_path):
    base, handler = server
    body = b"x" * 3_000_000
    prefix = hashlib.sha256(body).hexdigest()[:8]
    _serve(handler, "/good.bin", body)
    dest = download(f"{base}/good.bin", tmp_path / "good.bin", sha256_prefix=prefix, progress=False)
    assert dest.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.bin"]


def test_sha256_mismatch_is_refused_and_leaves_nothing(server, tmp_path):
    base, handler = server
    _serve(handler, "/bad.bin", b"not the published file")
    with pytest.raises(DownloadError, match="sha256 .* does not match the expected 0c10b180"):
        download(f"{base}/bad.bin", tmp_path / "bad.bin", sha256_prefix="0c10b180", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_connection_cut_leaves_no_partial_file(server, tmp_path):
    base, handler = server
    _serve(handler, "/cut.bin", b"y" * 2_000_000, cut=True)
    with pytest.raises(DownloadError, match="cut|failed") as err:
        download(f"{base}/cut.bin", tmp_path / "cut.bin", progress=False)
    assert "no file was kept" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_convert_cli_from_url_checks_the_hash_in_the_name(server, tmp_path, w18_files, capsys):
    base, handler = server
    body = w18_files["mmcls"].read_bytes()
    name = f"hrnet-w18_test-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    _serve(handler, "/" + name, body)
    assert (
        convert.main(
            [
                f"{base}/{name}",
                "--model",
                "hrnet-w18",
                "--out",
                str(tmp_path),
                "--no-progress",
                "--keras",
            ]
        )
        == 0
    )
    assert (tmp_path / "hrnet-w18.weights.h5").is_file() and (
        tmp_path / "hrnet-w18.keras"
    ).is_file()
    # the same bytes under a name with another hash are refused
    _serve(handler, "/hrnet-w18_test-deadbeef.pth", body)
    out = tmp_path / "second"
    assert (
        convert.main(
            [
                f"{base}/hrnet-w18_test-deadbeef.pth",
                "--model",
                "hrnet-w18",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 1
    )
    assert "does not match the expected deadbeef" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_download_row_through_a_mirror_refuses_a_wrong_file(server, tmp_path, monkeypatch, capsys):
    base, handler = server
    preset = get_preset("hrnet-w18")
    _serve(handler, "/mirror/" + preset.filename, b"an impostor")
    monkeypatch.setenv("HRNET_KERAS_MIRROR", f"{base}/mirror")
    assert convert.main(["--download", "hrnet-w18", "--out", str(tmp_path), "--no-progress"]) == 1
    assert f"expected {preset.sha256_prefix}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit):
        convert.main([])
    assert convert.main(["x.pth", "--model", "hrnet-w19", "--out", "/tmp/none"]) == 1
    assert "Known models" in capsys.readouterr().err
