"""The send guard's cost: `.venv/bin/python bench/guard.py` (or `--subscribers 1000000 --bounces 20000`).

One issue still sending with SUBSCRIBERS ledger rows, all sent (a million by default), and BOUNCES
hard bounces recorded against them, in a database of its own (`oa_bench_guard`, made anew and
dropped at the end). Then feedback.guard.check_send(), which runs after every bounce or complaint
that arrives while the issue goes out, is timed CALLS times; ends with one JSON line.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]
os.environ.setdefault("BENCH_DB", "oa_bench_guard")

import erase  # noqa: E402  (the same seeding, settings and database handling)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--bounces", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    erase.psql(f"DROP DATABASE IF EXISTS {erase.DB_NAME} WITH (FORCE)")
    erase.psql(f"CREATE DATABASE {erase.DB_NAME}")
    try:
        import subprocess

        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=erase.ROOT, check=True)
        import django

        django.setup()
        from django.db import connection, connections

        from feedback import guard
        from newsletters.models import Issue

        started = time.monotonic()
        rows = erase.seed(1, args.subscribers)
        issue = Issue.objects.get()
        Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.SENDING)
        with connection.cursor() as cursor:
            cursor.execute(
                """INSERT INTO feedback_feedbackevent (sns_message_id, kind, subtype, delivery_id, message_id,
                       recipient, detail, at, received_at)
                   SELECT 'bench-' || id, 'bounce', 'Permanent', id, message_id, 'fan@bench.example', '{}', now(), now()
                   FROM newsletters_delivery ORDER BY id LIMIT %s""", [args.bounces])
            cursor.execute("ANALYZE")
        erase.log(f"seeded {rows} ledger rows and {args.bounces} bounces in {time.monotonic() - started:.1f}s")
        seconds = []
        with override(SEND_GUARD_BOUNCE_RATE=1.0, SEND_GUARD_EVERY_SECONDS=0):  # measure the counting, never pause
            for _ in range(args.calls):
                began = time.perf_counter()
                assert guard.check_send(issue.pk) == ""
                seconds.append(time.perf_counter() - began)
        sent, bounces, _ = guard.send_health(issue.pk)
        assert (sent, bounces) == (rows, args.bounces)
        connections.close_all()
    finally:
        erase.psql(f"DROP DATABASE IF EXISTS {erase.DB_NAME} WITH (FORCE)")
    print(json.dumps({"bench": "guard", "ledger_rows": rows, "bounces": args.bounces,
                      "median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 4)}), flush=True)


def override(**values):
    from django.test import override_settings

    return override_settings(**values)


if __name__ == "__main__":
    main()
