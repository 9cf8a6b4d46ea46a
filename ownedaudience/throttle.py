"""Rate limits for the public signup endpoint: fixed windows counted in Redis.

Both counters (client IP, address) are bumped in one pipelined round trip. When Redis does
not answer, a signup is still taken (it is written to PostgreSQL first, see ARCHITECTURE.md)
and the limits are skipped for a few seconds rather than costing every request a timeout.
"""

import ipaddress
import logging
import threading
import time

from django.conf import settings

log = logging.getLogger(__name__)

RETRY_REDIS_AFTER = 5.0  # seconds of failing open after Redis did not answer


def parse_rate(value):
    """'100/600' -> (100, 600): at most 100 in each 600-second window."""
    count, _, seconds = str(value).partition("/")
    return int(count), max(int(seconds or 60), 1)


def client_ip(request):
    """The fan's address: the socket peer, or the last hop our own proxy appended."""
    address = request.META.get("REMOTE_ADDR", "")
    if settings.CLIENT_IP_FROM_FORWARDED_FOR:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if hops:
            address = hops[-1]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def ip_bucket(ip):
    """IPv6 users get a /64 each, so one of them cannot dodge the limit by hopping addresses."""
    if ip and ":" in ip:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address)
    return ip or "unknown"


class RedisCounters:
    def __init__(self, url):
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=0.25)
        self.down_until = 0.0

    def bump(self, keys):
        """Add one to each (key, window) and return the new counts, or None when Redis is away."""
        if time.monotonic() < self.down_until:
            return None
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, window in keys:
                pipe.incr(key)
                pipe.expire(key, window + 1)
            replies = pipe.execute()
        except Exception as error:  # redis-py raises several kinds; any of them means "not now"
            self.down_until = time.monotonic() + RETRY_REDIS_AFTER
            log.warning("rate limits skipped for %ss: Redis did not answer (%s)", RETRY_REDIS_AFTER, error)
            return None
        return replies[0::2]


class LocalCounters:
    """For `make run` without Redis: counts in this process only."""

    def __init__(self):
        self.counts = {}
        self.lock = threading.Lock()

    def bump(self, keys):
        with self.lock:
            if len(self.counts) > 100_000:
                self.counts.clear()
            result = []
            for key, _window in keys:
                self.counts[key] = self.counts.get(key, 0) + 1
                result.append(self.counts[key])
            return result


_counters = None


def counters():
    global _counters
    if _counters is None:
        _counters = RedisCounters(settings.REDIS_URL) if settings.REDIS_URL else LocalCounters()
    return _counters


def reset_counters():
    """Forget the process's counter client (tests change settings between cases)."""
    global _counters
    _counters = None


def signup_allowed(*, ip, address=None, now=None):
    """(ip_ok, address_ok, retry_after_seconds) for one signup attempt, counting it."""
    now = int(now if now is not None else time.time())
    prefix = settings.RATE_LIMIT_KEY_PREFIX
    ip_limit, ip_window = parse_rate(settings.SIGNUP_RATE_PER_IP)
    keys = [(f"{prefix}:signup-ip:{ip_bucket(ip)}:{now // ip_window}", ip_window)]
    if address:
        address_limit, address_window = parse_rate(settings.SIGNUP_RATE_PER_ADDRESS)
        keys.append((f"{prefix}:signup-address:{address.lower()}:{now // address_window}", address_window))
    counts = counters().bump(keys)
    if counts is None:
        return True, True, 0
    ip_ok = counts[0] <= ip_limit
    address_ok = len(counts) < 2 or counts[1] <= address_limit
    return ip_ok, address_ok, ip_window - now % ip_window
