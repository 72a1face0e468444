"""data.download=true: the archive fetched from a loopback HTTP server, md5-checked, installed
atomically; a truncated or wrong download is refused by name and leaves nothing behind."""
import hashlib
import http.server
import tarfile
import threading

import pytest

from conftest import write_cifar_folder
from experiments.train import run
from run_support import config
from tagi.data import CIFAR10_ARCHIVE, DataError, download_cifar10


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """http://127.0.0.1:PORT serving a small CIFAR-10 archive at /good and a cut copy at /cut
    (whose header announces the whole length) -> (base URL, the archive's md5)."""
    src = tmp_path_factory.mktemp("src")
    archive = src / CIFAR10_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(write_cifar_folder(src), arcname="cifar-10-batches-py")
    body = archive.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in ("/good", "/cut"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if self.path == "/good" else body[:len(body) // 2])
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hashlib.md5(body).hexdigest()
    httpd.shutdown()


def main_job(root, url, md5, out):
    cfg = config("data.download=true", f"data.root={root}", f"data.url={url}", f"data.md5={md5}",
                 "data.train_limit=16", "data.test_limit=8", "backend=numpy", "progress=false")
    return run(cfg, out)


def test_good_download_is_installed_and_trains(server, tmp_path):
    url, md5 = server
    metrics = main_job(tmp_path / "data", f"{url}/good", md5, tmp_path / "run")
    archive = tmp_path / "data" / CIFAR10_ARCHIVE
    assert hashlib.md5(archive.read_bytes()).hexdigest() == md5
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [CIFAR10_ARCHIVE]
    assert len(metrics) == 1 and (tmp_path / "run" / "metrics.csv").exists()
    assert download_cifar10(tmp_path / "data", f"{url}/missing", md5) == archive   # present: no fetch


@pytest.mark.parametrize("path, wrong_md5, fault", [
    ("/cut", False, r"/cut: (truncated download|download failed \(IncompleteRead)"),
    ("/good", True, r"/good: md5 [0-9a-f]{32} does not match the expected 0{32}"),
    ("/missing", False, r"/missing: download failed \(HTTPError: HTTP Error 404")])
def test_bad_download_is_refused_and_leaves_nothing(server, tmp_path, path, wrong_md5, fault):
    url, md5 = server
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f".{CIFAR10_ARCHIVE}.killed.part").write_bytes(b"of a killed download")
    with pytest.raises(DataError, match=fault):
        main_job(tmp_path / "data", url + path, "0" * 32 if wrong_md5 else md5, tmp_path / "run")
    assert list((tmp_path / "data").iterdir()) == []
    assert not (tmp_path / "run" / "metrics.csv").exists()
