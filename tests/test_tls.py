"""HTTP/2 over TLS via ALPN, with a throwaway self-signed certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import httpx
import pytest

from tests.conftest import UPLOAD_KEY, base_config
from tests.helpers import ServerProcess, clip
from tests.test_upload import fresh_system, sdrtrunk_fields


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_h2_over_tls(tmp_path, database_url):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    config = base_config(tmp_path / "data", database_url, tls={"cert": str(cert), "key": str(key)})
    srv = ServerProcess(tmp_path, config, scheme="https").start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(http2=True, verify=ctx) as client:
            r = client.post(
                f"{srv.url}/api/call-upload",
                data=dict(sdrtrunk_fields(fresh_system(), key=UPLOAD_KEY)),
                files={"audio": ("a.mp3", clip("speech_sdrtrunk.mp3"))},
            )
        assert r.http_version == "HTTP/2" and r.status_code == 200
        assert r.text == "Call imported successfully."
    finally:
        srv.stop()
