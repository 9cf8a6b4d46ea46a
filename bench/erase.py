"""The erasure benchmark: `.venv/bin/python bench/erase.py` (or `--issues 10 --subscribers 100000 --people 20`).

One newsletter with ISSUES × SUBSCRIBERS delivery rows (a million by default: 10 issues sent to
100,000 people, each with a subscription, its first event and a sent confirmation), inserted
set-based in a database of its own (`oa_bench_erase`, on PostgreSQL at BENCH_PG, made anew and
dropped at the end). Then PEOPLE random subscribers ask to be forgotten, one erase_subscriber()
each, as the preference page's "Delete my data" calls it (every newsletter, so every issue's rows
are probed), and the script prints the median and the slowest, ending with one JSON line.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

DB_NAME = os.environ.get("BENCH_DB", "oa_bench_erase")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")

os.environ.update({
    "DJANGO_SETTINGS_MODULE": "ownedaudience.settings",
    "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ",
    "DATABASE_URL": f"{PG}/{DB_NAME}",
    "REDIS_URL": "",
    "SITE_URL": "https://news.bench.example",
    "EMAIL_URL": "discard://",
    "LOG_LEVEL": "WARNING",
})


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def psql(sql):
    subprocess.run(["psql", f"{PG}/postgres", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def seed(issues, subscribers):
    """The audience, its history and the ledger, each in one set-based statement."""
    from django.db import connection

    from newsletters.models import Issue, Newsletter

    newsletter = Newsletter.objects.create(slug="bench", name="Bench Weekly", sender_email="letters@bench.example",
                                           postal_address="1 Benchmark Road, Hanoi")
    for number in range(issues):
        Issue.objects.create(newsletter=newsletter, title=f"Issue {number}", slug=f"issue-{number}", body_markdown="Hi")
    statements = [
        ("""INSERT INTO subscribers_subscriber (email, name, created_at)
            SELECT 'fan' || g || '@bench.example', 'Fan ' || g, now() FROM generate_series(1, %s) g""", [subscribers]),
        ("""INSERT INTO subscribers_subscription (subscriber_id, newsletter_id, status, tier, source, consent_form,
                consent_text, consent_user_agent, created_at, updated_at)
            SELECT id, %s, 'active', 'free', 'bench', 'page', 'Yes', '', now(), now() FROM subscribers_subscriber""",
         [newsletter.pk]),
        ("""INSERT INTO subscribers_subscriptionevent (subscription_id, kind, at, from_status, to_status, from_tier,
                to_tier, actor, detail, consent_form, consent_text, consent_user_agent)
            SELECT id, 'signup', now(), '', 'active', '', 'free', 'fan', '', 'page', 'Yes', ''
            FROM subscribers_subscription""", []),
        ("""INSERT INTO subscribers_owedemail (subscription_id, kind, status, attempts, due_at, claim, message_id,
                error, created_at, sent_at)
            SELECT id, 'confirmation', 'sent', 1, now(), '', '', '', now(), now() FROM subscribers_subscription""", []),
        ("""INSERT INTO newsletters_delivery (issue_id, subscriber_id, variant, status, attempts, claimed_by,
                message_id, error, sent_at)
            SELECT i.id, s.id, 'free', 'sent', 1, '', '<oa.' || i.id || '.' || s.id || '@bench.example>', '', now()
            FROM newsletters_issue i CROSS JOIN subscribers_subscriber s""", []),
    ]
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("ANALYZE")
        cursor.execute("SELECT count(*) FROM newsletters_delivery")
        return cursor.fetchone()[0]


def erase_people(count):
    """Seconds of each erasure, for `count` people picked at random."""
    from subscribers.erasure import erase_subscriber
    from subscribers.models import Subscriber

    ids = random.Random(9).sample(list(Subscriber.objects.values_list("id", flat=True)), count)
    seconds = []
    for subscriber_id in ids:
        started = time.perf_counter()
        assert erase_subscriber(subscriber_id, actor="fan") == 1
        seconds.append(time.perf_counter() - started)
    return ids, seconds


def orm_deletes(count, exclude):
    """For comparison: Subscriber.delete(), Django's cascade, which looks the ledger up by subscriber."""
    from subscribers.models import Subscriber

    seconds = []
    for subscriber in Subscriber.objects.exclude(id__in=exclude).order_by("?")[:count]:
        started = time.perf_counter()
        subscriber.delete()
        seconds.append(time.perf_counter() - started)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issues", type=int, default=10)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--orm-baseline", type=int, default=0, metavar="N",
                        help="also time N Subscriber.delete() calls (the ORM cascade), logged to stderr")
    args = parser.parse_args()

    psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB_NAME}")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
        import django

        django.setup()
        from django.db import connections

        from delivery.models import Delivery

        log(f"seeding {args.issues} issues × {args.subscribers} subscribers")
        started = time.monotonic()
        ledger_rows = seed(args.issues, args.subscribers)
        log(f"seeded {ledger_rows} ledger rows in {time.monotonic() - started:.1f}s; erasing {args.people} people")
        ids, seconds = erase_people(args.people)
        left = Delivery.objects.filter(issue__newsletter__slug="bench", subscriber_id__in=ids).count()
        assert left == 0 and Delivery.objects.count() == ledger_rows - args.people * args.issues, left
        log("per erasure (s): " + " ".join(f"{s:.4f}" for s in seconds))
        if args.orm_baseline:
            baseline = orm_deletes(args.orm_baseline, ids)
            log("Subscriber.delete() (s): " + " ".join(f"{s:.4f}" for s in baseline)
                + f"; median {statistics.median(baseline):.4f}")
        connections.close_all()
    finally:
        psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    print(json.dumps({"bench": "erase", "ledger_rows": ledger_rows, "median_s": round(statistics.median(seconds), 4),
                      "max_s": round(max(seconds), 4)}), flush=True)


if __name__ == "__main__":
    main()
