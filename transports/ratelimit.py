"""One send rate for the whole account, and one pause: a token bucket in Redis that every worker
draws from, beside a pause that throttling sets for everyone.

Callers reserve tokens before handing messages over and sleep for the wait they are told;
the bucket may go negative, so reservations queue up fairly instead of polling. While a pause
runs, a reservation takes no tokens and is told to wait until the pause ends. Redis's own
clock is used, so workers on different hosts agree.
"""

import threading
import time

import redis
from django.conf import settings

BUCKET_KEY = "ownedaudience:send-bucket"
PAUSE_KEY = "ownedaudience:send-pause"
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('HGET', KEYS[2], 'until')) or 0
if paused > now then return paused - now end
local rate = tonumber(ARGV[1])
if rate <= 0 then return 0 end
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * rate / 1000) - wanted
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 60000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens * 1000 / rate)
"""
# A report of throttling during a pause changes nothing (it came from messages already in
# flight); after the pause, each new report doubles the delay; a calm spell forgets it all.
PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'until', 'level')
local paused = tonumber(state[1]) or 0
if paused > now then return paused - now end
local level = (tonumber(state[2]) or 0) + 1
local delay = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) * 2 ^ (level - 1))
redis.call('HSET', KEYS[1], 'until', now + delay, 'level', level)
redis.call('PEXPIRE', KEYS[1], math.ceil(delay + tonumber(ARGV[3])))
return math.ceil(delay)
"""
PAUSED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('HGET', KEYS[1], 'until')) or 0
if paused > now then return paused - now end
return 0
"""


class RateUnavailable(Exception):
    """The shared bucket did not answer within SEND_RATE_PATIENCE_SECONDS."""


def _pause_args():
    base, most = settings.SEND_PAUSE_BASE_SECONDS * 1000, settings.SEND_PAUSE_MAX_SECONDS * 1000
    return [base, most, most]


class RedisBucket:
    def __init__(self, url, rate, key=BUCKET_KEY, pause_key=PAUSE_KEY):
        self.rate = rate
        self.keys = [key, pause_key]
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.reserve_script = self.client.register_script(RESERVE)
        self.pause_script = self.client.register_script(PAUSE)
        self.paused_script = self.client.register_script(PAUSED)

    def reserve(self, count):
        """Take `count` tokens; returns seconds to wait before using them."""
        capacity = max(self.rate or 0, count)  # about one second of burst
        return self.reserve_script(keys=self.keys, args=[self.rate or 0, capacity, count]) / 1000

    def pause(self):
        """Pause every sender; returns the seconds it lasts."""
        return self.pause_script(keys=self.keys[1:], args=_pause_args()) / 1000

    def paused_for(self):
        return self.paused_script(keys=self.keys[1:]) / 1000


class LocalBucket:
    """The same for a single process, when no Redis is configured (`make run`)."""

    def __init__(self, rate):
        self.rate = rate
        self.tokens = rate or 0
        self.stamp = time.monotonic()
        self.paused_until = 0.0
        self.level = 0
        self.lock = threading.Lock()

    def reserve(self, count):
        with self.lock:
            now = time.monotonic()
            if self.paused_until > now:
                return self.paused_until - now
            if not self.rate:
                return 0.0
            capacity = max(self.rate, count)
            self.tokens = min(capacity, self.tokens + (now - self.stamp) * self.rate) - count
            self.stamp = now
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def pause(self):
        base, most, calm = (value / 1000 for value in _pause_args())
        with self.lock:
            now = time.monotonic()
            if self.paused_until > now:
                return self.paused_until - now
            if now - self.paused_until > calm:
                self.level = 0
            self.level += 1
            delay = min(most, base * 2 ** (self.level - 1))
            self.paused_until = now + delay
            return delay

    def paused_for(self):
        return max(0.0, self.paused_until - time.monotonic())


_bucket = None


def bucket(transport):
    """The bucket for this process, sized to SEND_RATE or else the provider's own limit."""
    global _bucket
    if _bucket is None:
        rate = settings.SEND_RATE or transport.max_send_rate()
        if settings.REDIS_URL:
            _bucket = RedisBucket(settings.REDIS_URL, rate)
        else:
            _bucket = LocalBucket(rate)
    return _bucket


def _patiently(call):
    """Ride out a short Redis outage; past SEND_RATE_PATIENCE_SECONDS, raise RateUnavailable."""
    deadline = time.monotonic() + settings.SEND_RATE_PATIENCE_SECONDS
    while True:
        try:
            return call()
        except redis.RedisError as error:
            if time.monotonic() > deadline:
                raise RateUnavailable(str(error)) from error
            time.sleep(0.5)


def reserve(transport, count):
    """Take tokens for `count` messages; returns the seconds to wait before sending them."""
    return _patiently(lambda: bucket(transport).reserve(count))


def paused_for(transport):
    """Seconds left of a pause (0 when none): checked before a batch claims rows."""
    return _patiently(lambda: bucket(transport).paused_for())


def pause(transport):
    """The relay or provider is throttling: every sender waits; returns how long."""
    try:
        return _patiently(lambda: bucket(transport).pause())
    except RateUnavailable:
        return settings.SEND_PAUSE_BASE_SECONDS
