"""One send rate for the whole account: a token bucket in Redis that every worker draws from.

Callers reserve tokens before handing messages over and sleep for the wait they are told;
the bucket may go negative, so reservations queue up fairly instead of polling. Redis's own
clock is used, so workers on different hosts agree.
"""

import threading
import time

import redis
from django.conf import settings

BUCKET_KEY = "ownedaudience:send-bucket"
RESERVE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * rate / 1000) - wanted
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 60000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens * 1000 / rate)
"""


class RedisBucket:
    def __init__(self, url, rate, key=BUCKET_KEY):
        self.rate = rate
        self.key = key
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.script = self.client.register_script(RESERVE)

    def reserve(self, count):
        """Take `count` tokens; returns seconds to wait before using them."""
        capacity = max(self.rate, count)  # about one second of burst
        return self.script(keys=[self.key], args=[self.rate, capacity, count]) / 1000


class LocalBucket:
    """The same bucket for a single process, when no Redis is configured (`make run`)."""

    def __init__(self, rate):
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def reserve(self, count):
        with self.lock:
            now = time.monotonic()
            capacity = max(self.rate, count)
            self.tokens = min(capacity, self.tokens + (now - self.stamp) * self.rate) - count
            self.stamp = now
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Unlimited:
    rate = None

    def reserve(self, count):
        return 0.0


_bucket = None


def bucket(transport):
    """The bucket for this process, sized to SEND_RATE or else the provider's own limit."""
    global _bucket
    if _bucket is None:
        rate = settings.SEND_RATE or transport.max_send_rate()
        if not rate:
            _bucket = Unlimited()
        elif settings.REDIS_URL:
            _bucket = RedisBucket(settings.REDIS_URL, rate)
        else:
            _bucket = LocalBucket(rate)
    return _bucket


def reserve(transport, count, *, retry_for=60.0):
    """Take tokens for `count` messages; returns the seconds to wait before sending them.
    Rides out a short Redis outage by retrying."""
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return bucket(transport).reserve(count)
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
