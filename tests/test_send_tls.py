"""STARTTLS, implicit TLS and AUTH against aiosmtpd with a throwaway certificate."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from masthead.deliver import create_send, send_issue, smtp_settings
from masthead.errors import SmtpError
from sendkit import FAST_RETRIES, SLUG, add_subscribers, built_template, open_pub, wired_copy
from smtp_sink import SinkHandler, start_controller

# aiosmtpd's own AUTH code sets the attribute it deprecates (in its server thread)
# and warns about AUTH without STARTTLS, though implicit TLS protects it here
pytestmark = [
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_template(tmp_path_factory.mktemp("tls-pub") / "pub")


def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(b"editor", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


class TlsController(Controller):
    def __init__(self, handler, port, *, starttls, server_ssl, **kw):  # type: ignore[no-untyped-def]
        self.starttls = starttls
        super().__init__(handler, hostname="127.0.0.1", port=port, ssl_context=server_ssl, **kw)

    def factory(self):  # type: ignore[no-untyped-def]
        return SMTP(
            self.handler,
            hostname="sink.test",
            tls_context=self.starttls,
            require_starttls=self.starttls is not None,
            authenticator=authenticator,
            auth_required=True,
            # aiosmtpd only knows about TLS it started itself (STARTTLS)
            auth_require_tls=self.starttls is not None,
        )


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_auth(
    template: Path,
    tmp_path: Path,
    certificate: tuple[Path, Path],
    security: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = certificate
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)
    handler = SinkHandler(pipelining=False)
    controller = start_controller(
        lambda port: TlsController(
            handler,
            port,
            starttls=server_ssl if security == "starttls" else None,
            server_ssl=server_ssl if security == "tls" else None,
        )
    )
    try:
        root = wired_copy(
            template,
            tmp_path / "pub",
            controller.port,
            f'security = "{security}"\nusername = "editor"\ntimeout = 30\n',
        )
        pub, store, issue = open_pub(root)
        addresses = add_subscribers(store, 12)
        create_send(store, SLUG)
        client_ssl = ssl.create_default_context(cafile=str(cert))
        with pytest.raises(SmtpError, match="MASTHEAD_SMTP_PASSWORD is empty"):
            smtp_settings(pub)
        monkeypatch.setenv("MASTHEAD_SMTP_PASSWORD", "wrong")
        wrong = replace(smtp_settings(pub), ssl_context=client_ssl)
        with pytest.raises(SmtpError, match="refused authentication"):
            send_issue(pub, store, issue, policy=FAST_RETRIES, settings=wrong)
        monkeypatch.setenv("MASTHEAD_SMTP_PASSWORD", "s3cret")
        settings = replace(smtp_settings(pub), ssl_context=client_ssl)
        report = send_issue(pub, store, issue, policy=FAST_RETRIES, settings=settings)
    finally:
        controller.stop()
    assert report.state.complete
    assert Counter(m.rcpt for m in handler.messages) == Counter(addresses)
