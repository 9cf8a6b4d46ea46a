"""One spelling per address: the domain of an internationalised address in its IDNA form."""

import hashlib

import idna


def normalize_email(email):
    """Trim, and an IDN domain in its IDNA form (`exämple.org` → `xn--exmple-cua.org`), so one
    address has one spelling and the envelope can carry it; uniqueness ignores case entirely."""
    email = email.strip()
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return email
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except UnicodeError:
        return email  # kept as typed; the send fails that one row with the reason


def erased_digest(email):
    """What erasure keeps of an address: a SHA-256 of its one spelling, lower-cased. It cannot be
    mailed or read back, and an import of the same address matches it and leaves it out."""
    return hashlib.sha256(b"ownedaudience-erased:" + normalize_email(email).lower().encode()).hexdigest()
