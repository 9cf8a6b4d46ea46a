"""The DKIM signing benchmark: messages/s of building N copies of the send benchmark's issue with
delivery/mime.py, unsigned and signed by transports/dkim.py, in one process; and, for scale,
dkimpy's own dkim.sign() on a few of them.

    .venv/bin/python bench/dkim_sign.py --n 20000            # 2048-bit key (the default)
    .venv/bin/python bench/dkim_sign.py --n 20000 --bits 1024

Needs no database or Redis (the issue and newsletter are never saved). Prints one JSON line.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from send import BODY  # noqa: E402  (the send benchmark's issue body)

os.environ.update({
    "DJANGO_SETTINGS_MODULE": "ownedaudience.settings",
    "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ",
    "DATABASE_URL": "sqlite:///:memory:",
    "REDIS_URL": "",
    "SITE_URL": "https://news.bench.example",
    "EMAIL_URL": "discard://",
})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--dkimpy-n", type=int, default=200, help="messages for dkimpy's own dkim.sign()")
    args = parser.parse_args()

    import django

    django.setup()
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from delivery.mime import PreparedMessage, Recipient, shared_headers
    from newsletters.models import Issue, Newsletter
    from newsletters.rendering import render_issue
    from transports.dkim import Signer, public_key_record

    pem = rsa.generate_private_key(public_exponent=65537, key_size=args.bits).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    newsletter = Newsletter(slug="bench", name="Bench Weekly", sender_email="letters@bench.example",
                            postal_address="1 Benchmark Road, Hanoi")
    issue = Issue(pk=1, newsletter=newsletter, title="Bench issue", slug="bench", body_markdown=BODY)
    html, text = render_issue(issue, "free")
    prepared = PreparedMessage(issue=issue, headers=shared_headers(issue), html_body=html, text_body=text)
    recipients = [Recipient(i, f"fan{i}@bench.example", f"Fan {i}", i) for i in range(1, args.n + 1)]
    date = "Thu, 03 Dec 2026 10:00:00 +0000"

    def build_all(sign=None):
        started = time.perf_counter()
        for recipient in recipients:
            raw = prepared.build(recipient, date=date).raw
            if sign:
                raw = sign(raw)
        return time.perf_counter() - started

    started = time.perf_counter()
    signer = Signer("bench", "bench.example", pem)
    key_load_ms = (time.perf_counter() - started) * 1000
    build_all()  # warm up
    unsigned_s = build_all()
    signed_s = build_all(signer.sign)

    sample = prepared.build(recipients[0], date=date).raw
    record = public_key_record(pem).encode()
    assert dkim.verify(signer.sign(sample), dnsfunc=lambda name, timeout=5: record)
    few = recipients[:args.dkimpy_n]
    started = time.perf_counter()
    for recipient in few:
        dkim.sign(prepared.build(recipient, date=date).raw, b"bench", b"bench.example", pem,
                  canonicalize=(b"relaxed", b"relaxed"))
    dkimpy_s = time.perf_counter() - started

    n = args.n
    print(json.dumps({
        "bench": "dkim", "n": n, "key_bits": args.bits, "message_bytes": len(sample),
        "key_load_ms": round(key_load_ms, 2),
        "unsigned_msgs_per_s": round(n / unsigned_s), "signed_msgs_per_s": round(n / signed_s),
        "sign_us_per_msg": round((signed_s - unsigned_s) / n * 1e6, 1),
        "dkimpy_sign_msgs_per_s": round(len(few) / dkimpy_s, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
