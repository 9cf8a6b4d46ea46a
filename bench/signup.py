"""Signup throughput: gunicorn + PostgreSQL + Redis, loaded from a second process on loopback.

    make bench-signup            # or: .venv/bin/python bench/signup.py [--duration 20] [--connections 32]

It creates its own database (oa_bench_signup, dropped at the end) and uses its own Redis DB
(11, keys under a fresh prefix; nothing is flushed). The rate limits are set so high that they
never throttle the load, which comes from one address. A real Celery worker (with beat) sends
every confirmation to an SMTP sink while the load runs. Afterwards it waits until the outbox
has drained, then checks that every 2xx answer has exactly one subscription row and exactly
one confirmation email, and prints one JSON line.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = "oa_bench_signup"


# --- the load generator (runs in its own process) --------------------------------------------


async def _one_connection(host, port, path, prefix, deadline, results):
    reader = writer = None
    sent = 0
    while time.monotonic() < deadline:
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
        email = f"{prefix}-{sent}@bench.example"
        sent += 1
        body = f"email={email.replace('@', '%40')}&form=page&ref=bench".encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            f"User-Agent: bench-signup\r\n\r\n"
        ).encode() + body
        started = time.monotonic()
        try:
            writer.write(request)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length, close = 0, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            results.append((email, 0, time.monotonic() - started))
            writer.close()
            reader = writer = None
            continue
        results.append((email, status, time.monotonic() - started))
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(url, duration, connections, out_path):
    parts = urlsplit(url)
    results = []
    run = uuid.uuid4().hex[:8]

    async def main():
        deadline = time.monotonic() + duration
        await asyncio.gather(
            *(
                _one_connection(parts.hostname, parts.port, parts.path, f"{run}-{c}", deadline, results)
                for c in range(connections)
            )
        )

    started = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(out_path).write_text(
        json.dumps(
            {
                "elapsed": elapsed,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "results": results,
            }
        )
    )


# --- the orchestrator --------------------------------------------------------------------------


def database_urls():
    base = (
        os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or "postgres://postgres@127.0.0.1:5432/postgres"
    )
    parts = urlsplit(base)
    admin = urlunsplit(parts._replace(path="/postgres"))
    bench = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    return admin, bench


def psql(admin_url, sql):
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql)


def start_sink():
    from aiosmtpd.controller import Controller

    from tests.servers import free_port

    class Handler:
        def __init__(self):
            self.recipients = []
            self.lock = threading.Lock()

        async def handle_DATA(self, server, session, envelope):
            with self.lock:
                self.recipients.extend(r.lower() for r in envelope.rcpt_tos)
            return "250 2.0.0 Ok"

    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller, handler


def wait_for_port(port, process, what, timeout=60):
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.1)


def tree_cpu_seconds(root_pid):
    """CPU seconds (user + system) used so far by a process and all its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents, cpu = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 20)))
    parser.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", 32)))
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("BENCH_WEB_WORKERS", 4)))
    parser.add_argument(
        "--worker",
        choices=["during", "after"],
        default=os.environ.get("BENCH_WORKER", "during"),
        help="send confirmations while the load runs (default), or only once it has stopped",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"))
    parser.add_argument("--load", help=argparse.SUPPRESS)  # internal: run as the load generator
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        return run_load(args.load, args.duration, args.connections, args.out)

    from tests.servers import free_port, project_env

    admin_url, bench_url = database_urls()
    psql(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DB}")
    psql(admin_url, f"CREATE DATABASE {BENCH_DB}")
    controller, sink = start_sink()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = project_env(
        SECRET_KEY="bench-" + uuid.uuid4().hex * 2,
        DATABASE_URL=bench_url,
        REDIS_URL=args.redis_url,
        EMAIL_URL=f"smtp://127.0.0.1:{controller.port}",
        SITE_URL=base,
        LOG_LEVEL="WARNING",
        # The load comes from one loopback address: limits this high never throttle it.
        SIGNUP_RATE_PER_IP="1000000000/60",
        SIGNUP_RATE_PER_ADDRESS="1000000000/60",
        RATE_LIMIT_KEY_PREFIX=f"bench:{uuid.uuid4().hex}",
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v", "0"], env=env, cwd=ROOT, check=True)
    subprocess.run(
        manage + ["create_newsletter", "bench", "--name", "Bench", "--owner", "bench@example.com"],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    processes = []
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-signup-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "ownedaudience.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.web_workers),
                "--backlog",
                "2048",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(scratch / "web.log", "wb"),
        )
        processes.append(web)

        def start_worker():
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "ownedaudience",
                    "worker",
                    "-B",
                    "--loglevel",
                    "WARNING",
                    "-Q",
                    "transactional",
                    "--concurrency",
                    "1",
                    "--without-gossip",
                    "--without-mingle",
                    "--schedule",
                    str(scratch / "beat-schedule"),
                ],
                cwd=ROOT,
                env=env,
                stdout=open(scratch / "worker.log", "ab"),
                stderr=subprocess.STDOUT,
            )
            processes.append(worker)
            return worker

        worker = start_worker() if args.worker == "during" else None
        wait_for_port(port, web, "gunicorn")
        # Warm every web worker (imports, database connection) with page views, not signups.
        import urllib.request

        for _ in range(args.web_workers * 4):
            urllib.request.urlopen(f"{base}/bench/", timeout=10).read()

        out = scratch / "load.json"
        cpu_before = {
            "web": tree_cpu_seconds(web.pid),
            "worker": tree_cpu_seconds(worker.pid) if worker else 0.0,
        }
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                f"{base}/bench/subscribe",
                "--duration",
                str(args.duration),
                "--connections",
                str(args.connections),
                "--out",
                str(out),
            ],
            cwd=ROOT,
            check=True,
        )
        cpu_during = {
            "web": tree_cpu_seconds(web.pid) - cpu_before["web"],
            "worker": (tree_cpu_seconds(worker.pid) - cpu_before["worker"]) if worker else 0.0,
        }
        if worker is None:
            worker = start_worker()
        report = json.loads(out.read_text())
        results = report["results"]
        ok_emails = [email for email, status, _ in results if 200 <= status < 300]
        latencies_ms = [seconds * 1000 for _, status, seconds in results if 200 <= status < 300]

        # Let the dispatcher and the worker finish every owed email.
        import psycopg

        with psycopg.connect(bench_url, autocommit=True) as db:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                unfinished = db.execute(
                    "SELECT count(*) FROM subscribers_owedemail WHERE status IN ('pending', 'queued', 'sending')"
                ).fetchone()[0]
                if unfinished == 0:
                    break
                time.sleep(0.5)
            rows_by_email = dict(
                db.execute(
                    "SELECT lower(s.email), count(*) FROM subscribers_subscription sub "
                    "JOIN subscribers_subscriber s ON s.id = sub.subscriber_id GROUP BY lower(s.email)"
                ).fetchall()
            )
            owed = dict(
                db.execute("SELECT status, count(*) FROM subscribers_owedemail GROUP BY status").fetchall()
            )
        rows = sum(rows_by_email.values())
        with sink.lock:
            mail_counts = {}
            for recipient in sink.recipients:
                mail_counts[recipient] = mail_counts.get(recipient, 0) + 1
        lost = [e for e in ok_emails if rows_by_email.get(e.lower()) != 1 or mail_counts.get(e.lower()) != 1]
        elapsed = report["elapsed"]
        details = {
            "duration_s": round(elapsed, 2),
            "connections": args.connections,
            "web_workers": args.web_workers,
            "non_2xx": len(results) - len(ok_emails),
            "lost_or_duplicated": len(lost),
            "owed_email_statuses": owed,
            "worker": args.worker,
            "load_generator_cpu_percent": round(100 * report["cpu_seconds"] / elapsed, 1),
            "web_cpu_percent": round(100 * cpu_during["web"] / elapsed, 1),
            "worker_cpu_percent": round(100 * cpu_during["worker"] / elapsed, 1),
            "web_cpu_ms_per_signup": round(1000 * cpu_during["web"] / max(len(ok_emails), 1), 2),
            "mean_ms": round(statistics.fmean(latencies_ms), 1) if latencies_ms else None,
        }
        print("details:", json.dumps(details), flush=True)
        print(
            json.dumps(
                {
                    "bench": "signup",
                    "requests": len(results),
                    "ok": len(ok_emails),
                    "signups_per_s": round(len(ok_emails) / elapsed, 1),
                    "p50_ms": round(percentile(latencies_ms, 0.50), 1) if latencies_ms else None,
                    "p99_ms": round(percentile(latencies_ms, 0.99), 1) if latencies_ms else None,
                    "rows": rows,
                    "confirmation_emails": sum(mail_counts.values()),
                }
            ),
            flush=True,
        )
        return 1 if lost else 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        controller.stop()
        time.sleep(0.5)
        psql(admin_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main() or 0)
