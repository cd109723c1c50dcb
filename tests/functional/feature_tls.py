"""The API over TLS: `[api] tls_cert` and `tls_key` in config.toml make `transx node` serve HTTPS only (what the
owner's app needs before it signs for a browser beyond this machine), and a certificate that does not load is
one line, exit 2, before anything starts."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import ssl
import subprocess
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node_support import ENV, TRANSX, NodeProcess, transx, wait_for


def _self_signed(cert_path, key_path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def _with_tls(node: NodeProcess, cert: str, key: str) -> None:
    cfg = node.datadir / "config.toml"
    cfg.write_text(cfg.read_text().replace("[api]\n", f'[api]\ntls_cert = "{cert}"\ntls_key = "{key}"\n', 1))


def test_the_api_serves_https_with_the_configured_certificate_and_nothing_in_the_clear(tmp_path):
    node = NodeProcess.init_dev(tmp_path / "node")
    _self_signed(node.datadir / "api.crt", node.datadir / "api.key")
    _with_tls(node, "api.crt", "api.key")  # relative to the data directory
    node.start()
    try:
        api = json.loads((node.datadir / "node.json").read_text())["api"]
        assert api.startswith("https://127.0.0.1:"), api
        trusted = ssl.create_default_context(cafile=str(node.datadir / "api.crt"))
        wait_for(lambda: json.load(urllib.request.urlopen(api + "/api/head", context=trusted, timeout=10))["height"] >= 1,
                 30, "a block over HTTPS")
        host, port = api.removeprefix("https://").split(":")
        plain = http.client.HTTPConnection(host, int(port), timeout=5)
        try:  # plain HTTP on the TLS port gets no API answer
            plain.request("GET", "/api/head")
            answer = plain.getresponse().status
        except (OSError, http.client.HTTPException):
            answer = None
        assert answer != 200
        # the CLI on the node's machine reads node.json's https URL and trusts the certificate it is told of
        r = subprocess.run([*TRANSX, "explorer", "head", *node.dd], capture_output=True, text=True, timeout=60,
                           env={**ENV, "SSL_CERT_FILE": str(node.datadir / "api.crt")})
        assert r.returncode == 0 and r.stdout.startswith("block "), r
    finally:
        assert node.stop() == 0


def test_a_certificate_that_does_not_load_is_one_line_and_exit_2(tmp_path):
    node = NodeProcess.init_dev(tmp_path / "node")
    (node.datadir / "api.crt").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    (node.datadir / "api.key").write_text("not a key\n")
    _with_tls(node, "api.crt", "api.key")
    r = transx("node", *node.dd)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r
    assert "[api] tls_cert/tls_key" in r.stderr and "cannot serve TLS" in r.stderr, r.stderr
    assert not (node.datadir / "node.json").exists()
