"""One POST to an endpoint, and which addresses it may reach.

A webhook URL is the creator's to choose, so the server must not become their way into the
operator's network (SSRF): a host that resolves to a loopback, private, link-local or other
non-global address is refused when the endpoint is saved and again when each connection is
made (the addresses checked are the ones connected to, so DNS cannot change its answer in
between). WEBHOOK_ALLOW_PRIVATE_URLS=true lifts the rule (tests, a receiver on the same host).
Redirects are not followed; no proxy is used.
"""

import http.client
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

USER_AGENT = "ownedaudience-webhooks/1"
EXCERPT = 500  # bytes of the answer kept in the delivery log


class UnsafeURL(ValueError):
    """A URL a webhook may not be posted to (never worth a retry)."""


def _forbidden(address):
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _resolve(host, port):
    """The addresses to connect to; UnsafeURL if any of them is not public (unless allowed)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        for info in infos:
            if _forbidden(info[4][0]):
                raise UnsafeURL(
                    f"{host} resolves to {info[4][0]}, a loopback, private or link-local address: "
                    "webhooks go to public addresses only."
                )
    return infos


def _parse(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("Give an http:// or https:// URL with a host name.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("The port is not a number between 0 and 65535.")
    return parts, port


def check_url(url, *, resolve_errors=True):
    """(parts, port) of an http(s) URL whose host resolves to public addresses only, else UnsafeURL.

    A host that does not resolve (yet) passes when `resolve_errors` is false: its sends fail
    and are retried, and each connection is checked again.
    """
    parts, port = _parse(url)
    try:
        _resolve(parts.hostname, port)
    except OSError as error:
        if resolve_errors:
            raise UnsafeURL(f"{parts.hostname} does not resolve: {error}")
    return parts, port


def _guarded_connection(address, timeout=None, source_address=None, **kwargs):
    """socket.create_connection, to checked addresses only."""
    error = OSError(f"no address for {address[0]}")
    for family, kind, proto, _, sockaddr in _resolve(*address):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as failure:
            sock.close()
            error = failure
    raise error


class _Guarded:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection  # HTTPS wraps the socket this returns


class _HTTP(_Guarded, http.client.HTTPConnection):
    pass


class _HTTPS(_Guarded, http.client.HTTPSConnection):
    pass


def post(url, body, headers, timeout):
    """POST `body` (bytes); returns (status code, the start of the answer). Raises UnsafeURL for an
    address that is not allowed, OSError or http.client.HTTPException when no answer came."""
    parts, port = _parse(url)
    connection = (_HTTPS if parts.scheme == "https" else _HTTP)(parts.hostname, port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers={"user-agent": USER_AGENT, **headers})
        response = connection.getresponse()
        return response.status, response.read(EXCERPT).decode("utf-8", "replace")
    finally:
        connection.close()
