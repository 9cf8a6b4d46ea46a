"""The send benchmark: `make bench-send` (N = 10k, 100k, 1M) or `make bench-send N=100000`.

For each N, on PostgreSQL and Redis on 127.0.0.1 (a database and Redis DB of its own):
  snapshot_s            start_send() for N confirmed subscribers (render + INSERT ... SELECT)
  engine_msgs_per_s     real Celery worker processes sending through a transport that discards
  sink_msgs_per_s       the same through SMTP to Postfix's smtp-sink
  sink_raw_msgs_per_s   plain smtplib loops against that sink, as many connections as worker processes
  worker_peak_rss_mb    the largest peak RSS of any worker process (VmHWM)
  django_newsletter_msgs_per_s   django-newsletter 1.2.1 sending the same issue to 10,000 through the same sink
and prints one JSON line per N.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

DB_NAME = os.environ.get("BENCH_DB", "oa_bench_send")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
BODY = "Hello {{ name }},\n\n" + "\n\n".join(
    f"## Part {i}\n\nThis is paragraph {i} of the weekly letter, with **bold** words, "
    "a [link to the archive](https://example.org/archive) and enough prose to look like a real issue. " * 4
    for i in range(1, 9)
)

os.environ.update({
    "DJANGO_SETTINGS_MODULE": "ownedaudience.settings",
    "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ",
    "DATABASE_URL": f"{PG}/{DB_NAME}",
    "REDIS_URL": REDIS,
    "SITE_URL": "https://news.bench.example",
    "EMAIL_URL": "discard://",
    "LOG_LEVEL": "WARNING",
})


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def psql(sql, database="postgres"):
    subprocess.run(["psql", f"{PG}/{database}", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def fresh_database():
    from django.apps import apps

    if apps.ready:  # a previous size's connection: closed before its database is dropped
        from django.db import connections

        connections.close_all()
    psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    import redis

    redis.Redis.from_url(REDIS).flushdb()


def seed(n):
    """n confirmed subscribers of one newsletter, in two set-based statements."""
    from django.db import connection

    from newsletters.models import Newsletter

    newsletter = Newsletter.objects.create(slug="bench", name="Bench Weekly", sender_email="letters@bench.example",
                                           postal_address="1 Benchmark Road, Hanoi")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE subscribers_subscription, subscribers_subscriber CASCADE")
        cursor.execute(
            "INSERT INTO subscribers_subscriber (email, name, created_at) "
            "SELECT 'fan' || g || '@bench.example', 'Fan ' || g, now() FROM generate_series(1, %s) g", [n])
        cursor.execute(
            "INSERT INTO subscribers_subscription (subscriber_id, newsletter_id, status, tier, source, consent_form,"
            " consent_text, consent_user_agent, created_at, updated_at) "
            "SELECT id, %s, 'active', 'free', 'bench', '', '', '', now(), now() FROM subscribers_subscriber",
            [newsletter.pk])
        cursor.execute("ANALYZE")
    return newsletter


def new_issue(newsletter, slug):
    from newsletters.models import Issue

    return Issue.objects.create(newsletter=newsletter, title=f"Bench issue {slug}", slug=slug, body_markdown=BODY)


def children(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def peak_rss_mb(pid):
    """The largest VmHWM (peak resident memory) among a worker's processes."""
    peaks = []
    for process in [pid, *children(pid)]:
        try:
            match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{process}/status").read_text())
        except OSError:
            continue
        if match:
            peaks.append(int(match.group(1)) / 1024)
    return max(peaks)


def start_worker(email_url, concurrency):
    env = dict(os.environ, EMAIL_URL=email_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "ownedaudience", "worker", "-Q", "bulk,default", "-c",
         str(concurrency), "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"bench-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    time.sleep(0.5)
    deadline = time.monotonic() + 60
    while len(children(process.pid)) < concurrency:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    time.sleep(1)  # let the pool children finish importing
    return process


def stop_worker(process):
    import signal

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def timed_send(issue, email_url, concurrency, chains):
    """Seconds from kicking a started issue until it is sent, and the worker's peak memory."""
    from delivery import engine
    from newsletters.models import Issue

    worker = start_worker(email_url, concurrency)
    try:
        started = time.monotonic()
        engine.kick(issue.pk, chains)
        while Issue.objects.values_list("status", flat=True).get(pk=issue.pk) == Issue.Status.SENDING:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        rss = peak_rss_mb(worker.pid)
    finally:
        stop_worker(worker)
    return elapsed, rss, engine.progress(issue.pk)


def snapshot_issue(newsletter, slug):
    from delivery import engine

    issue = new_issue(newsletter, slug)
    kick, engine.chains.kick = engine.chains.kick, (lambda *a, **k: None)
    try:
        started = time.monotonic()
        count = engine.start_send(issue.pk)
        seconds = time.monotonic() - started
    finally:
        engine.chains.kick = kick
    return issue, count, seconds


def run(n, concurrency, chains, django_newsletter_n, skip_django_newsletter, engine_only=False):
    import django

    fresh_database()
    django.setup()
    from delivery.engine import prepared
    from delivery.mime import Recipient

    log(f"[n={n}] seeding")
    newsletter = seed(n)
    issue, count, snapshot_s = snapshot_issue(newsletter, "engine")
    assert count == n, (count, n)
    log(f"[n={n}] snapshot {snapshot_s:.2f}s; engine run (discard transport)")
    engine_s, engine_rss, statuses = timed_send(issue, "discard://", concurrency, chains)
    assert statuses == {"sent": n}, statuses
    if engine_only:
        return {"bench": "send", "n": n, "snapshot_s": round(snapshot_s, 2),
                "engine_msgs_per_s": round(n / engine_s), "worker_peak_rss_mb": round(engine_rss, 1)}

    from sink import delivered, raw_capacity, smtp_sink

    smtp_issue, _, _ = snapshot_issue(newsletter, "smtp")
    with smtp_sink() as port:
        log(f"[n={n}] SMTP run to smtp-sink on port {port}")
        smtp_s, smtp_rss, statuses = timed_send(smtp_issue, f"smtp://127.0.0.1:{port}", concurrency, chains)
        assert statuses == {"sent": n}, statuses
        got = delivered(port)
        assert got == n, f"the sink counted {got} of {n}"
        # The raw loops send one of the engine's own messages, byte for byte.
        sample = prepared(smtp_issue.pk, "free").build(Recipient(1, "fan1@bench.example", "Fan 1", 1)).raw
        size = len(sample)
        raw_messages = min(n, 50_000)
        log(f"[n={n}] raw sink capacity, {concurrency} connections, {raw_messages} messages of {size} bytes")
        raw = raw_capacity(port, connections=concurrency, messages=raw_messages, message_bytes=sample)

    dn = None
    if not skip_django_newsletter:
        with smtp_sink() as port:
            log(f"[n={n}] django-newsletter, {django_newsletter_n} subscribers")
            result = subprocess.run(
                [sys.executable, str(BENCH / "django_newsletter" / "run.py"), "--n", str(django_newsletter_n),
                 "--smtp-port", str(port)], capture_output=True, text=True, cwd=ROOT)
            if result.returncode != 0:
                raise RuntimeError(f"django-newsletter run failed:\n{result.stderr[-3000:]}")
            dn = json.loads(result.stdout.strip().splitlines()[-1])["msgs_per_s"]

    return {
        "bench": "send",
        "n": n,
        "snapshot_s": round(snapshot_s, 2),
        "engine_msgs_per_s": round(n / engine_s),
        "sink_msgs_per_s": round(n / smtp_s),
        "sink_raw_msgs_per_s": round(raw),
        "worker_peak_rss_mb": round(max(engine_rss, smtp_rss), 1),
        "django_newsletter_msgs_per_s": round(dn, 1) if dn else None,
        "worker_concurrency": concurrency,
        "message_bytes": size,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("BENCH_CONCURRENCY", 4)),
                        help="worker processes (and SMTP connections)")
    parser.add_argument("--chains", type=int, default=0, help="batches in flight (default: concurrency + 2)")
    parser.add_argument("--django-newsletter-n", type=int, default=10_000)
    parser.add_argument("--skip-django-newsletter", action="store_true")
    parser.add_argument("--engine-only", action="store_true", help="snapshot and engine throughput only")
    args = parser.parse_args()
    for n in args.n:
        result = run(n, args.concurrency, args.chains or args.concurrency + 2, min(n, args.django_newsletter_n),
                     args.skip_django_newsletter, args.engine_only)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
