"""A loopback stand-in for Amazon SNS's certificate host, and SNS's signatures made with a test key.

A test CA issues the TLS certificate of `sns.us-east-1.amazonaws.com`; the stand-in serves it on
127.0.0.1 (the app connects there through SNS_CERTIFICATE_CONNECT_TO and trusts the CA through
SNS_CA_BUNDLE, still checking the host name). It serves the signing certificate at any
`/SimpleNotificationService-*.pem` path and answers SNS's ConfirmSubscription, noting every path it
was asked for. The signing here is written from AWS's documentation, apart from the app's.
"""

import base64
import http.server
import ssl
import threading
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

HOST = "sns.us-east-1.amazonaws.com"
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(subject_key, common_name, *, issuer_key=None, issuer_name=None, ca=False, host=None):
    """An X.509 certificate for `subject_key`, self-signed unless an issuer is given."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    # Python's default TLS context checks strictly (VERIFY_X509_STRICT): key identifiers and usages.
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key((issuer_key or subject_key).public_key()), critical=False
    ).add_extension(x509.KeyUsage(
        digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, key_encipherment=not ca, content_commitment=False,
        data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False,
    ), critical=True)
    if host:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
    return builder.sign(issuer_key or subject_key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class SnsStandIn:
    def __init__(self, directory):
        ca_key, self.signing_key, server_key = new_key(), new_key(), new_key()
        ca = certificate(ca_key, "Test SNS CA", ca=True)
        server = certificate(server_key, HOST, issuer_key=ca_key, issuer_name=ca.subject, host=HOST)
        self.signing_pem = pem(certificate(self.signing_key, "sns.amazonaws.com"))
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(pem(ca))
        self.server_files = (directory / "server.pem", directory / "server.key")
        self.server_files[0].write_bytes(pem(server))
        self.server_files[1].write_bytes(server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ))
        self.paths = []

    def start(self):
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                standin.paths.append(self.path)
                if self.path.startswith("/SimpleNotificationService-") and self.path.endswith(".pem"):
                    self._answer(200, standin.signing_pem, "application/x-pem-file")
                elif self.path.startswith("/?Action=ConfirmSubscription"):
                    self._answer(200, b"<ConfirmSubscriptionResponse/>", "text/xml")
                else:
                    self._answer(404, b"not here", "text/plain")

            def _answer(self, status, body, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self.server_files)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def certificate_url():
        """A certificate URL of its own (nothing cached for it yet)."""
        return f"https://{HOST}/SimpleNotificationService-{uuid.uuid4().hex}.pem"

    def sign(self, message, version="1", key=None):
        """`message` with SNS's signature fields, signed with the test key (or `key`)."""
        fields = NOTIFICATION_FIELDS if message["Type"] == "Notification" else SUBSCRIPTION_FIELDS
        signed = "".join(f"{field}\n{message[field]}\n" for field in fields if field in message).encode()
        signature = (key or self.signing_key).sign(signed, padding.PKCS1v15(), HASHES[version]())
        return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}
