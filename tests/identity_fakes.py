"""Loopback stand-ins for what an identity-based connection needs in Azure, for tests/test_identity.py:

- a private CA and a server certificate for 127.0.0.1 (OAuth in Azurite needs HTTPS);
- Azurite with ``--oauth basic`` on https (it checks a bearer token's issuer, audience and
  lifetime, not its signature);
- a fake App Service managed identity endpoint (``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER``),
  which azure-identity's ``DefaultAzureCredential`` asks before anything that would leave the machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from scripts.azurite import Azurite, free_port

STORAGE_AUDIENCE = "https://storage.azure.com"
TENANT = "00000000-0000-4000-8000-00000000cafe"


# -- TLS ----------------------------------------------------------------------------------------------
def write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for IP 127.0.0.1 (and localhost).

    Returns (ca.pem, server.pem, server-key.pem). A separate CA rather than one self-signed
    leaf: rustls (obstore) refuses a CA certificate used as the server's own, and OpenSSL
    (requests, aiohttp) wants a CA in its trust store.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ncrefs test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


# -- Azurite with OAuth --------------------------------------------------------------------------------
def start_oauth_azurite(location: Path, cert: Path, key: Path) -> Azurite:
    """Azurite's blob service on https://127.0.0.1:<port>, accepting bearer tokens (``--oauth basic``)."""
    location.mkdir(parents=True, exist_ok=True)
    return Azurite(free_port(), location, scheme="https",
                   extra_args=("--oauth", "basic", "--cert", str(cert), "--key", str(key), "--loose")).start()


# -- tokens and the managed identity endpoint -----------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(audience: str = STORAGE_AUDIENCE, issuer: str = f"https://sts.windows.net/{TENANT}/",
             lifetime_s: int = 3600) -> tuple[str, int]:
    """An HS256 token with the claims Azurite's basic OAuth checks (it does not check the signature);
    returns (token, exp)."""
    now = int(time.time())
    claims = {"aud": audience, "iss": issuer, "iat": now - 60, "nbf": now - 60, "exp": now + lifetime_s,
              "tid": TENANT, "oid": "00000000-0000-4000-8000-00000000f00d", "sub": "ncrefs-test-identity",
              "appid": "00000000-0000-4000-8000-0000000000aa", "ver": "1.0"}
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = _b64(hmac.new(b"not-a-real-key", f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{signature}", claims["exp"]


@dataclass
class FakeManagedIdentity:
    """An App Service managed identity endpoint on http://127.0.0.1:<port>/msi/token.

    Answers GET ?api-version=2019-08-01&resource=... (with the ``X-IDENTITY-HEADER`` secret) the way
    App Service does; ``requests`` records each request's query and whether its header matched.
    """

    secret: str = "fake-identity-header-secret"
    audience: str = STORAGE_AUDIENCE
    requests: list[dict] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"

    def environment(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.secret}

    def start(self) -> FakeManagedIdentity:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server name
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append({"path": url.path, "query": query,
                                      "header_ok": self.headers.get("X-IDENTITY-HEADER") == fake.secret})
                if url.path != "/msi/token" or self.headers.get("X-IDENTITY-HEADER") != fake.secret:
                    return self._send(400, {"statusCode": 400, "message": "bad request"})
                token, expires = make_jwt(audience=fake.audience)
                self._send(200, {"access_token": token, "expires_on": str(expires),
                                 "resource": query.get("resource", ""), "token_type": "Bearer",
                                 "client_id": "00000000-0000-4000-8000-0000000000aa"})

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self._server, self._thread = _serve(Handler, "fake-msi")
        return self

    def stop(self) -> None:
        _shut(self._server)
        self._server = None


@dataclass
class Tripwire:
    """A loopback server that records every request and refuses it (502).

    Given to the CLI as its HTTP(S) proxy (with loopback excepted) and as its IMDS address
    (``AZURE_POD_IDENTITY_AUTHORITY_HOST``): anything that would leave the machine, or ask the
    VM metadata service (169.254.169.254), lands here instead, and the test sees it.
    """

    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def environment(self) -> dict[str, str]:
        return {"HTTP_PROXY": self.url, "HTTPS_PROXY": self.url, "ALL_PROXY": self.url,
                "http_proxy": self.url, "https_proxy": self.url, "all_proxy": self.url,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "AZURE_POD_IDENTITY_AUTHORITY_HOST": self.url}

    def start(self) -> Tripwire:
        tripwire = self

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self):
                tripwire.requests.append(f"{self.command} {self.path}")
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = do_CONNECT = _refuse

            def log_message(self, *args):
                pass

        self._server, _ = _serve(Handler, "tripwire")
        return self

    def stop(self) -> None:
        _shut(self._server)
        self._server = None


def _serve(handler: type[BaseHTTPRequestHandler], name: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return server, thread


def _shut(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
