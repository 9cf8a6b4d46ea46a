#!/usr/bin/env python3
"""django-newsletter sending one issue to N subscribers through its own send path, timed.

    python bench/django_newsletter/run.py --n 10000 --smtp-port PORT

Any Python 3 starts it. It makes its own virtualenv at bench/.cache/dn-venv (Python 3.12 or
3.13, the pinned requirements.txt beside this file) when missing or out of date, and re-runs
itself there. Then it creates the PostgreSQL database oa_bench_dn (dropped and created anew,
dropped again at the end unless --keep-db), migrates it, and writes one newsletter, N subscribed
subscriptions (bulk insert), one message of about 5 KB in a few articles, and its submission,
marked ready as the admin's "submit" action does. What is timed is django-newsletter's
`submit_newsletter` management command, the command its docs have cron run, called in-process:
it renders and sends every message through Django's SMTP email backend to the sink.

Without --smtp-port it starts its own smtp-sink (bench/sink.py). The sink's message counter
(smtp-sink -c) is read before and after, and the difference is reported as "delivered"; it is
null when the port is served by something that bench/sink.py did not start.

Output: one JSON line on stdout,
{"bench": "django_newsletter", "n": …, "seconds": …, "msgs_per_s": …, "delivered": …, …}.
The exit status is non-zero when the sink did not count N messages or django-newsletter logged
send errors.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE.parent
REPO_DIR = BENCH_DIR.parent
VENV = BENCH_DIR / ".cache" / "dn-venv"
REQUIREMENTS = HERE / "requirements.txt"
DB_PREFIX = "oa_bench_dn"
SUPPORTED = ((3, 12), (3, 13))  # Python versions django-newsletter 1.2.1 and Django 5.2 both support


class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"django_newsletter: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="subscribers, and so messages (default 10000)")
    parser.add_argument("--smtp-port", type=int, help="the SMTP sink's port (default: start an smtp-sink)")
    parser.add_argument("--smtp-host", default="127.0.0.1")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("DN_BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432"),
        help="the PostgreSQL server (default $DN_BENCH_PG_URL or postgres://postgres@127.0.0.1:5432)",
    )
    parser.add_argument(
        "--db-name", default=DB_PREFIX, help=f"database to create and drop; must start with {DB_PREFIX}"
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the database in place afterwards")
    parser.add_argument(
        "--body-bytes", type=int, default=5000, help="size of the message's article text (default 5000)"
    )
    parser.add_argument(
        "--python", help="interpreter for the virtualenv (default: a Python 3.13 or 3.12 found here)"
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if not args.db_name.startswith(DB_PREFIX) or not args.db_name.replace("_", "").isalnum():
        parser.error(f"--db-name must start with {DB_PREFIX} and hold only letters, digits and _")
    return args


# --------------------------------------------------------------------------- the virtualenv


def _version_of(interpreter: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [interpreter, "-c", "import sys, venv; print(*sys.version_info[:2])"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python(preferred: str | None) -> str:
    """A Python 3.13 or 3.12 (the versions both Django 5.2 and django-newsletter 1.2.1 support)."""
    if preferred:
        if _version_of(preferred) is None:
            raise BenchError(f"--python {preferred} does not run")
        return preferred
    candidates = [os.environ.get("DN_BENCH_PYTHON", ""), "python3.13", "python3.12"]
    if shutil.which("pyenv"):  # versions installed but not selected here (their shims refuse)
        root = subprocess.run(["pyenv", "root"], check=False, capture_output=True, text=True).stdout.strip()
        listed = subprocess.run(
            ["pyenv", "versions", "--bare"], check=False, capture_output=True, text=True
        ).stdout.split()
        for version in sorted(
            listed, key=lambda v: [int(p) if p.isdigit() else 0 for p in v.split(".")], reverse=True
        ):
            candidates.append(str(Path(root, "versions", version, "bin", "python")))
    candidates.append(sys.executable)
    found = REPO_DIR / "scripts" / "find-python"
    if found.is_file():
        candidates.append(
            subprocess.run(["sh", str(found)], check=False, capture_output=True, text=True).stdout.strip()
        )
    newer = None
    for candidate in filter(None, candidates):
        version = _version_of(candidate)
        if version in SUPPORTED:
            return candidate
        if version and version > SUPPORTED[-1] and not newer:
            newer = candidate
    if newer:
        log(f"no Python 3.12/3.13 found; trying {newer}, which django-newsletter 1.2.1 does not list")
        return newer
    raise BenchError("no Python 3.12 or 3.13 found; pass --python /path/to/python3.13")


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(preferred_python: str | None) -> Path:
    """Create or refresh bench/.cache/dn-venv from requirements.txt; return its python."""
    import fcntl

    stamp = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    marker = VENV / ".requirements-sha256"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / ".dn-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = venv_python()
        current = (
            _version_of(str(python)) if marker.is_file() and marker.read_text().strip() == stamp else None
        )
        if current and (not preferred_python or _version_of(preferred_python) == current):
            return python
        interpreter = find_python(preferred_python)
        log(f"creating {VENV.relative_to(REPO_DIR)} with {interpreter}")
        if VENV.exists():
            shutil.rmtree(VENV)
        subprocess.run([interpreter, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        result = subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=False)
        if result.returncode != 0:
            raise BenchError(f"pip could not install {REQUIREMENTS.name} into {VENV}")
        marker.write_text(stamp + "\n")
        return python


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --------------------------------------------------------------------------- the database


def pg_params(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise BenchError(f"--pg-url must be postgres://…, not {url!r}")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
    }


def _admin_connection(params: dict):
    import psycopg

    try:
        return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **params)
    except psycopg.OperationalError as exc:
        raise BenchError(f"cannot reach PostgreSQL at {params['host']}:{params['port']}: {exc}") from None


def drop_database(params: dict, name: str) -> None:
    import psycopg
    from psycopg import sql

    with _admin_connection(params) as conn:
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.errors.SyntaxError:  # servers before PostgreSQL 13 have no FORCE
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def create_database(params: dict, name: str) -> None:
    from psycopg import sql

    drop_database(params, name)
    with _admin_connection(params) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# --------------------------------------------------------------------------- the content


MARKDOWN_SECTIONS = [
    (
        "What changed this week",
        (
            "We shipped **archive search**: every past issue is now searchable from the "
            "[archive page](https://news.example.org/archive/). It matches titles and body text, "
            "and it is fast enough that we stopped apologising for it.\n\n"
            "* search by word or phrase\n* filter by year\n* links straight to the paragraph"
        ),
    ),
    (
        "Reader mail",
        (
            "Many of you asked how we pick the topics. Honestly: whatever kept us up at night. "
            "This month that was sourdough, the history of the postal code, and why a good "
            "newsletter feels like a letter from a friend rather than a billboard.\n\n"
            "Keep writing in. We read everything, and we answer more than you would think."
        ),
    ),
    (
        "The overnight sourdough",
        (
            "Mix the levain in the evening, fold three times before bed, and let the fridge do "
            "the rest. In the morning shape, proof for an hour, and bake hot: **250 °C** for "
            "twenty minutes with steam, then twenty without.\n\n"
            "* 500 g flour, 375 g water, 100 g levain, 10 g salt\n* a Dutch oven helps\n"
            "* patience helps more"
        ),
    ),
    (
        "Links worth your time",
        (
            "A long read on [how postal codes were invented](https://example.org/postcodes), a "
            "short film about a village bakery, and a [field guide to good "
            "typography](https://example.org/type) that will ruin menus for you forever."
        ),
    ),
]


def _inline(text: str) -> str:
    import html
    import re

    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\[(.+?)\]\((\S+?)\)", r'<a href="\2">\1</a>', text)


def markdownish_to_html(source: str) -> str:
    """Paragraphs, **bold**, [links](url) and * lists: the HTML a rich-text editor would store."""
    blocks = []
    for block in source.split("\n\n"):
        lines = block.splitlines()
        if all(line.startswith("* ") for line in lines):
            blocks.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>")
        else:
            blocks.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(blocks)


def articles(target_bytes: int) -> list[tuple[str, str]]:
    """(title, HTML text) pairs adding up to about target_bytes of article text."""
    result, total, round_ = [], 0, 0
    while total < target_bytes:
        round_ += 1
        for title, source in MARKDOWN_SECTIONS:
            html_text = markdownish_to_html(source)
            result.append((title if round_ == 1 else f"{title} ({round_})", html_text))
            total += len(html_text.encode())
            if total >= target_bytes:
                break
    return result


# --------------------------------------------------------------------------- the benchmark


def bench(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(BENCH_DIR))
    import sink  # stdlib only; the smtp-sink helper

    params = pg_params(args.pg_url)
    os.environ.update(
        DN_BENCH_DB_NAME=args.db_name,
        DN_BENCH_DB_HOST=params["host"],
        DN_BENCH_DB_PORT=params["port"],
        DN_BENCH_DB_USER=params["user"],
        DN_BENCH_DB_PASSWORD=params["password"],
        DN_BENCH_SMTP_HOST=args.smtp_host,
        DJANGO_SETTINGS_MODULE="dnbench.settings",
    )
    sys.path.insert(0, str(HERE))

    with contextlib.ExitStack() as stack:
        port = args.smtp_port or stack.enter_context(sink.smtp_sink(host=args.smtp_host))
        os.environ["DN_BENCH_SMTP_PORT"] = str(port)
        try:
            before = sink.delivered(port, args.smtp_host)
        except sink.SinkError:
            before = None
            log(f"{args.smtp_host}:{port} was not started by bench/sink.py: delivery is not counted")

        create_database(params, args.db_name)
        if not args.keep_db:
            stack.callback(drop_database, params, args.db_name)

        import django

        django.setup()
        from django.db import connections

        stack.callback(connections.close_all)  # runs before the drop: no session left open
        result = run_send(args, port)

        if before is not None:
            expected = before + args.n
            result["delivered"] = (
                sink.wait_delivered(port, expected, timeout=30, host=args.smtp_host) - before
            )
        else:
            result["delivered"] = None
    ok = result["errors"] == 0 and result["sent_flag"] and result["delivered"] in (args.n, None)
    result["ok"] = ok
    print(json.dumps(result), flush=True)
    if not ok:
        log(f"incomplete: delivered={result['delivered']} of {args.n}, errors={result['errors']}")
    return 0 if ok else 1


def run_send(args: argparse.Namespace, port: int) -> dict:
    import importlib.metadata
    import logging
    import platform
    from datetime import timedelta

    import django
    import sink
    from django.contrib.sites.models import Site
    from django.core.management import call_command
    from django.db import transaction
    from django.utils.timezone import now
    from newsletter.models import Article, Message, Newsletter, Submission, Subscription

    setup_started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)

    site = Site.objects.get_current()
    site.domain, site.name = "news.example.org", "Weekly Notes"
    site.save()
    with transaction.atomic():
        newsletter = Newsletter.objects.create(
            title="Weekly Notes", slug="weekly-notes", email="news@bench.example.org", sender="Weekly Notes"
        )
        newsletter.site.set([site])
        stamp = now()
        Subscription.objects.bulk_create(
            (
                Subscription(
                    newsletter=newsletter,
                    name_field=f"Reader {i}",
                    email_field=f"reader{i:07d}@bench.example.net",
                    subscribed=True,
                    subscribe_date=stamp,
                    create_date=stamp,
                )
                for i in range(args.n)
            ),
            batch_size=5000,
        )
        message = Message.objects.create(
            title="Archive search, reader mail and overnight sourdough", slug="issue-1", newsletter=newsletter
        )
        for order, (title, text) in enumerate(articles(args.body_bytes), start=1):
            Article.objects.create(post=message, title=title, text=text, sortorder=order * 10)
    # As the admin does: a submission for the message (its recipients: every subscribed
    # subscription), then the "submit" action marks it prepared for the queue.
    submission = Submission.from_message(message)
    submission.publish_date = now() - timedelta(minutes=1)
    submission.prepared = True
    submission.save()
    recipients = submission.subscriptions.count()
    if recipients != args.n:
        raise BenchError(f"the submission has {recipients} recipients, expected {args.n}")

    class Count(logging.Handler):
        errors = 0

        def emit(self, record):
            Count.errors += 1

    counter = Count(level=logging.ERROR)
    logging.getLogger("newsletter").addHandler(counter)

    setup_seconds = time.perf_counter() - setup_started
    busy = sink.cpu_busy_percent()  # the machine may be shared: say how busy it was
    started = time.perf_counter()
    call_command("submit_newsletter", verbosity=0)
    seconds = time.perf_counter() - started
    busy_after = sink.cpu_busy_percent()

    submission.refresh_from_db()
    one = submission.get_message(submission.subscriptions.first()).message().as_bytes()
    return {
        "bench": "django_newsletter",
        "n": args.n,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(args.n / seconds, 1),
        "delivered": None,
        "errors": Count.errors,
        "sent_flag": submission.sent,
        "message_size": len(one),
        "smtp": f"{args.smtp_host}:{port}",
        "django": django.get_version(),
        "django_newsletter": importlib.metadata.version("django-newsletter"),
        "python": platform.python_version(),
        "setup_seconds": round(setup_seconds, 2),
        "cpu_busy_before": busy,
        "cpu_busy_after": busy_after,
    }


def run_baseline(
    n: int = 10000,
    smtp_port: int | None = None,
    *,
    smtp_host: str = "127.0.0.1",
    extra_args: tuple[str, ...] = (),
    timeout: float = 3600,
) -> dict:
    """Run this script in a child process (it makes and uses its own virtualenv); return its JSON line.

    For an orchestrator in another environment: `from django_newsletter.run import run_baseline`
    with bench/ on sys.path. The result's "ok" is False when the sink did not count n messages.
    """
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--n",
        str(n),
        "--smtp-host",
        smtp_host,
        *extra_args,
    ]
    if smtp_port:
        cmd += ["--smtp-port", str(smtp_port)]
    proc = subprocess.run(
        cmd, check=False, stdout=subprocess.PIPE, text=True, timeout=timeout
    )  # stderr passes through
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"the django-newsletter run printed no result (exit status {proc.returncode})")
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not in_venv():
        python = ensure_venv(args.python)
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (sink, database) on kill, too
    return bench(args)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        log(str(exc))
        sys.exit(1)
