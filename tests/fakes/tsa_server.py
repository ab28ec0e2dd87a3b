"""A local RFC 3161 timestamp authority: ``openssl ts -reply`` behind an HTTP handler
on 127.0.0.1, with a throw-away CA and TSA certificate made in a temporary folder
(extendedKeyUsage timeStamping, critical, as RFC 3161 requires).

Usage::

    from tests.fakes.tsa_server import LocalTsa, local_tsa  # noqa: F401

    def test_x(local_tsa: LocalTsa) -> None:
        url = local_tsa.url          # POST application/timestamp-query here
        local_tsa.ca_file            # the root certificate, for -CAfile / ca_files
        local_tsa.down = True        # answers 503 until set back to False

Any request other than POST is recorded as an error and fails the test at teardown.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_TSA_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""

_TSA_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603, S607


def make_authority(folder: Path, name: str = "Test TSA") -> None:
    """ca.pem/ca.key (root), tsa.pem/tsa.key (signer) and the ts config in ``folder``."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "3", "-subj", f"/CN={name} Root CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
        "-subj", f"/CN={name}", cwd=folder,
    )  # fmt: skip
    (folder / "tsa.ext").write_text(_TSA_EXTENSIONS, encoding="ascii")
    _openssl(
        "x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tsa.pem", "-days", "2", "-extfile", "tsa.ext",
        cwd=folder,
    )  # fmt: skip
    (folder / "tsaserial").write_text("01\n", encoding="ascii")
    (folder / "tsa.cnf").write_text(_TSA_CONFIG.format(dir=folder), encoding="ascii")


class LocalTsa:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        make_authority(folder)
        self.down = False
        self.stamped = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsr"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def reply(self, query: bytes) -> bytes:
        with self._lock, tempfile.TemporaryDirectory(dir=self.folder) as work:
            query_file, reply_file = Path(work) / "q.tsq", Path(work) / "r.tsr"
            query_file.write_bytes(query)
            _openssl(
                "ts", "-reply", "-config", str(self.folder / "tsa.cnf"),
                "-queryfile", str(query_file), "-out", str(reply_file), cwd=self.folder,
            )  # fmt: skip
            self.stamped += 1
            return reply_file.read_bytes()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(tsa: LocalTsa) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if tsa.down:
                self.send_error(503, "down for the test")
                return
            if self.headers.get("Content-Type") != "application/timestamp-query":
                tsa.errors.append(f"content type {self.headers.get('Content-Type')}")
            try:
                reply = tsa.reply(body)
            except subprocess.CalledProcessError:
                self.send_error(400, "not a timestamp query")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self) -> None:
            tsa.errors.append(f"GET {self.path}")
            self.send_error(405)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def local_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    tsa = LocalTsa(tmp_path_factory.mktemp("tsa"))
    try:
        yield tsa
    finally:
        tsa.stop()
    assert tsa.errors == [], tsa.errors
