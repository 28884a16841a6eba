"""HTTPS through the checked transport: a throwaway CA, a TLS server on loopback
reached by name, SNI and Host kept, certificate failures named."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stockade import Guard, MemoryAuditSink, Policy
from stockade.errors import HTTPError, PolicyError
from stockade.tools.http import HTTPTool
from stockade.tools.http_transport import StaticResolver

NAME = "tls.legit.test"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TLSServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append({"path": self.path, "host": self.headers.get("Host", "")})
        body = b'{"tls": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hits: list[dict[str, str]]
    sni: list[str | None]


class TLSServer:
    """An HTTPS server on 127.0.0.1 with the given certificate chain; records SNI and Host."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self._server = _TLSServer(("127.0.0.1", 0), _Handler)
        self._server.hits, self._server.sni = [], []

        def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            self._server.sni.append(name)

        context.sni_callback = sni  # type: ignore[assignment]
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def hits(self) -> list[dict[str, str]]:
        return self._server.hits

    @property
    def sni(self) -> list[str | None]:
        return self._server.sni

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("stockade test CA", ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(NAME, leaf_key, (ca.subject, ca_key))
    self_key = ec.generate_private_key(ec.SECP256R1())
    selfsigned = _cert(NAME, self_key)
    other = _cert("other.legit.test", leaf_key, (ca.subject, ca_key))
    files = {
        "ca": (d / "ca.pem", _pem(ca)),
        "leaf": (d / "leaf.pem", _pem(leaf)),
        "leaf_key": (d / "leaf.key", _key_pem(leaf_key)),
        "self": (d / "self.pem", _pem(selfsigned)),
        "self_key": (d / "self.key", _key_pem(self_key)),
        "other": (d / "other.pem", _pem(other)),
        "junk": (d / "junk.pem", b"not a certificate\n"),
    }
    for path, data in files.values():
        path.write_bytes(data)
    return {k: p for k, (p, _) in files.items()}


def _guard(port: int, ca_file: Path | None) -> Guard:
    ca = f"  ca_file: {ca_file}\n" if ca_file else ""
    text = f"""version: 1
http:
  timeout: 5s
  connect_timeout: 5s
{ca}  allow:
    - id: tls
      host: {NAME}
      port: {port}
      addresses: [127.0.0.1]
"""
    guard = Guard.from_text(text, audit=MemoryAuditSink())
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)
    tool.use_resolver(StaticResolver({NAME: ["127.0.0.1"]}))
    return guard


def test_https_by_name_with_a_trusted_private_ca(pki: dict[str, Path]) -> None:
    server = TLSServer(pki["leaf"], pki["leaf_key"])
    guard = _guard(server.port, pki["ca"])
    try:
        r = guard.call("http", "request", {"url": f"https://{NAME}:{server.port}/v1/x"})
        assert r.value["status"] == 200 and r.value["body"] == '{"tls": true}'
        assert r.value["url"] == f"https://{NAME}:{server.port}/v1/x"
        # connected to the checked address, but SNI, Host and the certificate check used the name
        assert server.sni == [NAME]
        assert server.hits == [{"path": "/v1/x", "host": f"{NAME}:{server.port}"}]
        assert guard.audit.events[-1].extra["http_address"] == "127.0.0.1"  # type: ignore[attr-defined]
    finally:
        guard.close()
        server.close()


@pytest.mark.parametrize(
    ("cert", "key", "ca", "reason"),
    [
        ("self", "self_key", "ca", "self-signed certificate"),
        ("leaf", "leaf_key", None, "unable to get local issuer certificate"),
        ("other", "leaf_key", "ca", "Hostname mismatch"),
    ],
)
def test_certificate_failures_are_named(
    pki: dict[str, Path], cert: str, key: str, ca: str | None, reason: str
) -> None:
    server = TLSServer(pki[cert], pki[key])
    guard = _guard(server.port, pki[ca] if ca else None)
    try:
        with pytest.raises(HTTPError) as info:
            guard.call("http", "request", {"url": f"https://{NAME}:{server.port}/"})
        message = str(info.value)
        assert message.startswith(f"TLS certificate verify failed for `{NAME}`: ")
        assert reason in message
        assert server.hits == []
    finally:
        guard.close()
        server.close()


def test_ca_file_errors_are_located(pki: dict[str, Path], tmp_path: Path) -> None:
    for value, message in (
        (tmp_path / "nope.pem", "does not exist"),
        (pki["junk"], "holds no usable PEM certificate"),
    ):
        text = f"version: 1\nhttp:\n  allow: [{{host: a.test}}]\n  ca_file: {value}\n"
        with pytest.raises(PolicyError) as info:
            Policy.from_text(text, source="p.yaml")
        (problem,) = info.value.problems
        assert (problem.line, problem.key) == (4, "http.ca_file")
        assert f"CA file `{value}` {message}" in problem.message


def test_relative_ca_file_is_relative_to_the_policy(pki: dict[str, Path]) -> None:
    policy = pki["ca"].parent / "policy.yaml"
    policy.write_text("version: 1\nhttp:\n  allow: [{host: a.test}]\n  ca_file: ca.pem\n")
    config = Policy.from_file(policy).section("http")
    assert config.ca_file == pki["ca"]
