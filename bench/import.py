"""Import and export of a large list on PostgreSQL: rows/s, peak memory, export seconds.

    make bench-import N=1000000     # or: .venv/bin/python bench/import.py [--n 1000000] [--format substack]

It generates a subscriber file shaped like the platform's export (Substack's email_list CSV by
default: 4 % paid, 3 % with email turned off, 0.5 % duplicate rows in other case, 0.1 % invalid
addresses, quoted cells), creates its own database (oa_bench_import, dropped at the end), runs
`manage.py import_subscribers` in a child process (the peak RSS is the child's), checks the
counts against what it generated, runs the same import a second time (nothing may change),
then `manage.py export_newsletter`, and prints one JSON line.
"""

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = os.environ.get("BENCH_DB", "oa_bench_import")


def database_urls():
    base = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/postgres")), urlunsplit(parts._replace(path=f"/{BENCH_DB}"))


def psql(url, sql):
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql)


def generate_substack(path, n, seed=7):
    """A Substack email_list file of n rows; returns the counts the import must report."""
    rng = random.Random(seed)
    active = suppressed = paid = rejected = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "active_subscription", "expiry", "plan", "email_disabled", "created_at",
                         "first_payment_at"])
        unique = 0
        for i in range(n):
            roll = rng.random()
            if roll < 0.001:
                writer.writerow([f"broken {i}@example", "false", "", "", "false", "2024-01-01T00:00:00.000Z", ""])
                rejected += 1
                continue
            if roll < 0.006 and unique:  # the same reader again, in capitals: merged, not counted twice
                writer.writerow([f"Reader.{unique - 1}@Example.COM", "false", "", "", "false",
                                 "2024-05-01T00:00:00.000Z", ""])
                continue
            is_paid = rng.random() < 0.04
            disabled = rng.random() < 0.03
            day = 1 + i % 28
            writer.writerow([
                f"reader.{unique}@example.com", "true" if is_paid else "false",
                "2027-03-02T11:41:10.000Z" if is_paid else "", rng.choice(["monthly", "yearly"]) if is_paid else "",
                "true" if disabled else "false", f"2023-{1 + i % 12:02d}-{day:02d}T10:00:00.000Z",
                f"2024-{1 + i % 12:02d}-{day:02d}T10:00:00.000Z" if is_paid else "",
            ])
            unique += 1
            if disabled:
                suppressed += 1
            else:
                active += 1
                paid += is_paid
    # A duplicate of a disabled reader makes that reader suppressed whatever the other row says;
    # the duplicates above are plain free rows, so they never change a count.
    return {"active": active, "suppressed": suppressed, "paid": paid, "rejected": rejected}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("N", 1_000_000)))
    parser.add_argument("--keep", action="store_true", help="keep the database and the files")
    args = parser.parse_args()

    admin_url, bench_url = database_urls()
    psql(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DB}")
    psql(admin_url, f"CREATE DATABASE {BENCH_DB}")
    env = dict(os.environ, DATABASE_URL=bench_url, DEBUG="false", SECRET_KEY="bench-import",
               ALLOWED_HOSTS="localhost", REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"))
    manage = [sys.executable, str(ROOT / "manage.py")]
    scratch = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        subprocess.run(manage + ["migrate", "-v", "0"], env=env, cwd=ROOT, check=True)
        subprocess.run(manage + ["shell", "-c", (
            "from newsletters.services import creator_ensure, newsletter_create; "
            "user, _ = creator_ensure(email='bench@creators.example'); "
            "newsletter_create(slug='bench', name='Bench', owner=user)"
        )], env=env, cwd=ROOT, check=True)
        source = scratch / "email_list.bench.csv"
        started = time.monotonic()
        expected = generate_substack(source, args.n)
        print(f"generated {args.n} rows ({source.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - started:.1f} s",
              file=sys.stderr)

        def timed(command):
            started = time.monotonic()
            done = subprocess.run(manage + command, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
            sys.stderr.write(done.stderr[-2000:])
            return time.monotonic() - started, done.stdout.strip().splitlines()

        import_s, out = timed(["import_subscribers", str(source), "--newsletter", "bench"])
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        counts = json.loads(out[-1])
        assert counts == expected, (counts, expected)
        again_s, out = timed(["import_subscribers", str(source), "--newsletter", "bench"])
        assert json.loads(out[-1]) == expected
        export_s, _ = timed(["export_newsletter", "bench", str(scratch / "bench.zip")])
        result = {
            "bench": "import", "n": args.n, "rows_per_s": round(args.n / import_s),
            "import_s": round(import_s, 2), "second_import_s": round(again_s, 2),
            "peak_rss_mb": round(peak_mb), "export_s": round(export_s, 2),
            "export_mb": round((scratch / "bench.zip").stat().st_size / 1e6, 1), "counts": counts,
        }
        print(json.dumps(result))
    finally:
        if not args.keep:
            for path in scratch.iterdir():
                path.unlink()
            scratch.rmdir()
            psql(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
