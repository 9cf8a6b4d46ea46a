"""`manage.py check_domain DOMAIN`: the SPF, DKIM and DMARC records to publish for a From domain,
and, where DNS answers, whether each is there.

Exit status 1 when a required record is missing or different (SPF without this transport's
mechanism, a DKIM key other than DKIM_PRIVATE_KEY's, no DMARC record), or when the domain's mail
would not be signed; 0 otherwise, also when DNS could not be asked (it says so).
"""

import ipaddress

import dns.exception
import dns.resolver
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from transports import checks, dkim

PRESENT, MISSING, DIFFERENT, UNCHECKED = "present", "missing", "different", "not checked"


def _tags(text):
    tags = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            tags[name.strip().lower()] = "".join(value.split())
    return tags


class DNS:
    def __init__(self, resolver_address=None, timeout=4.0):
        if resolver_address:
            host, port = resolver_address, 53
            if resolver_address.count(":") == 1:  # IPv4:PORT (an IPv6 address has more colons)
                host, port = resolver_address.rsplit(":", 1)
            elif resolver_address.startswith("["):
                host, _, port = resolver_address[1:].partition("]:")
            ipaddress.ip_address(host)
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [host]
            self.resolver.port = int(port or 53)
        else:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self.resolver = None
        if self.resolver is not None:
            self.resolver.lifetime = self.resolver.timeout = timeout
        self.error = None if self.resolver is not None else "no DNS resolver is configured"

    def txt(self, name):
        """The TXT strings at `name` ([] when none), or None when DNS did not answer."""
        if self.resolver is None:
            return None
        try:
            answer = self.resolver.resolve(name, "TXT", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration,
                OSError) as error:
            self.error = f"DNS did not answer ({type(error).__name__})"
            return None
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset or []]

    def cname(self, name):
        if self.resolver is None:
            return None
        try:
            answer = self.resolver.resolve(name, "CNAME", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, OSError) as error:
            self.error = f"DNS did not answer ({type(error).__name__})"
            return None
        return [rdata.target.to_text().rstrip(".").lower() for rdata in answer.rrset or []]


class Command(BaseCommand):
    help = "Print the SPF, DKIM and DMARC records to publish for DOMAIN, and check them in DNS."

    def add_arguments(self, parser):
        parser.add_argument("domain", help="the From domain of a newsletter, e.g. news.example.org")
        parser.add_argument("--resolver", metavar="IP[:PORT]", help="ask this DNS server (default: the system's)")
        parser.add_argument("--timeout", type=float, default=4.0, help="seconds per DNS question (default 4)")
        parser.add_argument("--no-dns", action="store_true", help="only print the records")
        parser.add_argument("--spf-include", metavar="DOMAIN",
                            help="the relay's SPF domain (e.g. spf.relay.example), for SMTP")
        parser.add_argument("--rua", metavar="ADDRESS", help="where DMARC aggregate reports go")

    def handle(self, *args, domain, resolver, timeout, no_dns, spf_include, rua, **options):
        try:
            domain = dkim.ascii_domain(domain)
        except UnicodeError as error:
            raise CommandError(f"{domain!r} cannot be written in IDNA: {error}")
        try:
            lookups = None if no_dns else DNS(resolver, timeout)
        except ValueError:
            raise CommandError(f"--resolver wants IP or IP:PORT, not {resolver!r}")
        transport = settings.EMAIL_TRANSPORT
        kind = transport.get("transport")
        self.failures = []
        self.lookups = lookups
        self.stdout.write(f"Records for mail From @{domain} (transport: {kind}"
                          + (f" via {transport.get('host')}" if kind == "smtp" else "")
                          + (f" in {transport.get('region')}" if kind == "ses" else "") + ")\n")
        if kind not in ("smtp", "ses"):
            self.stdout.write(f"  Note: EMAIL_URL sends no mail out ({kind}); the records below are for SMTP.\n")

        self.spf(domain, kind, transport, spf_include)
        if kind == "ses":
            self.ses_dkim(domain, transport)
        else:
            self.smtp_dkim(domain)
        self.dmarc(domain, rua)

        if lookups is not None and lookups.error:
            self.stdout.write(f"\n{lookups.error}: nothing above was checked.")
        if self.failures:
            self.stdout.write("\nNot ready: " + "; ".join(self.failures))
            raise SystemExit(1)
        self.stdout.write("\nReady." if lookups is not None and not lookups.error else "")

    def record(self, label, kind, name, value, status, found=None):
        self.stdout.write(f"\n{label}: {kind} {name}\n  {value}")
        if status is not None:
            self.stdout.write(f"  -> {status}" + (f": found {found}" if found else ""))
        if status in (MISSING, DIFFERENT):
            self.failures.append(f"{label} {status}")

    def spf(self, domain, kind, transport, spf_include):
        if spf_include:
            mechanism = f"include:{spf_include}"
        elif kind == "ses":
            mechanism = "include:amazonses.com"
        else:
            host = transport.get("host") or "localhost"
            mechanism = "a" if _is_local(host) else f"a:{host}"
        suggestion = f"v=spf1 {mechanism} ~all"
        status, found = None, None
        if self.lookups is not None:
            records = self.lookups.txt(domain)
            if records is not None:
                spf = [r for r in records if r.lower().startswith("v=spf1")]
                if not spf:
                    status = MISSING
                else:
                    found = repr(spf[0])
                    status = PRESENT if mechanism.lower() in spf[0].lower().split() else DIFFERENT
        self.record("SPF", "TXT", domain, suggestion, status, found if status == DIFFERENT else None)
        if status == DIFFERENT:
            self.stdout.write(f"  (add {mechanism} to the record you have; one SPF record per name)")
        if kind == "ses":
            self.stdout.write("  SPF alignment: SES's default MAIL FROM is an amazonses.com address, so SPF "
                              f"aligns with @{domain} only with a custom MAIL FROM domain (a subdomain of {domain}, "
                              "with the MX and this SPF record on it); DMARC passes through DKIM meanwhile.")
        else:
            self.stdout.write(f"  SPF alignment: the envelope sender is the From address, so SPF checks {domain} "
                              "itself: aligned, unless the relay rewrites the envelope sender (Return-Path).")

    def smtp_dkim(self, domain):
        if not dkim.configured():
            self.stdout.write("\nDKIM: not configured (set DKIM_SELECTOR, DKIM_DOMAIN and DKIM_PRIVATE_KEY or "
                              "DKIM_PRIVATE_KEY_FILE; see the README). Mail goes out unsigned.")
            self.failures.append("DKIM not configured")
            return
        parent = dkim.ascii_domain(settings.DKIM_DOMAIN)
        try:
            value = dkim.public_key_record(dkim.private_key_pem())
        except (OSError, dkim.DKIMConfigError) as error:
            raise CommandError(f"the DKIM key cannot be read: {error}")
        if not dkim.within(domain, parent):
            self.stdout.write(f"\nDKIM: mail From @{domain} is NOT signed: {domain} is not DKIM_DOMAIN ({parent}) "
                              "or a subdomain of it. Not aligned.")
            self.failures.append("DKIM does not sign this domain")
            return
        name = f"{settings.DKIM_SELECTOR}._domainkey.{parent}"
        status, found = None, None
        if self.lookups is not None:
            records = self.lookups.txt(name)
            if records is not None:
                keys = [r for r in records if "p" in _tags(r)]
                if not keys:
                    status = MISSING
                else:
                    ours = _tags(value)["p"]
                    status = PRESENT if any(_tags(r).get("p") == ours for r in keys) else DIFFERENT
                    found = "a record with another public key" if status == DIFFERENT else None
        self.record("DKIM", "TXT", name, value, status, found)
        self.stdout.write(f"  DKIM alignment: signed d={parent}, "
                          + ("the From domain itself: aligned." if parent == domain
                             else f"a parent of {domain}: aligned under DMARC's relaxed alignment (adkim=r)."))

    def ses_dkim(self, domain, transport):
        self.stdout.write(f"\nDKIM: SES signs with Easy DKIM: three CNAME records TOKEN._domainkey.{domain} -> "
                          "TOKEN.dkim.amazonses.com. The tokens come from the SES console (Verified identities) "
                          f"or `aws sesv2 get-email-identity --email-identity {domain}`.")
        try:
            answer = checks.ses_identity(checks.ses_client(transport.get("region", "")), domain)
        except Exception as error:  # noqa: BLE001 - any trouble asking SES only means we print less
            self.stdout.write(f"  (could not ask SES for them: {type(error).__name__})")
            return
        if answer is None:
            self.stdout.write(f"  -> {missing_identity(domain)}")
            self.failures.append("SES identity missing")
            return
        tokens = answer.get("DkimAttributes", {}).get("Tokens") or []
        for token in tokens:
            name, target = f"{token}._domainkey.{domain}", f"{token}.dkim.amazonses.com"
            status = None
            if self.lookups is not None:
                found = self.lookups.cname(name)
                if found is not None:
                    status = PRESENT if target in found else (DIFFERENT if found else MISSING)
            self.record("DKIM", "CNAME", name, target, status)
        self.stdout.write(f"  DKIM alignment: Easy DKIM signs d={domain}: aligned.")

    def dmarc(self, domain, rua):
        name = f"_dmarc.{domain}"
        value = f"v=DMARC1; p=none; rua=mailto:{rua or 'dmarc-reports@' + domain}"
        status, found = None, None
        if self.lookups is not None:
            records = self.lookups.txt(name)
            if records is not None:
                dmarc = [r for r in records if r.replace(" ", "").upper().startswith("V=DMARC1")]
                status, found = (PRESENT, repr(dmarc[0])) if dmarc else (MISSING, None)
        self.record("DMARC", "TXT", name, value, status, found)
        self.stdout.write("  Start with p=none and read the reports; move to p=quarantine, then p=reject, once "
                          "every source of your mail passes.")


def missing_identity(domain):
    return f"{domain} is not an SES identity yet: create it (sesv2 create-email-identity) to get its DKIM tokens"


def _is_local(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
