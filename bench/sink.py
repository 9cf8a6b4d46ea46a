#!/usr/bin/env python3
"""Postfix's smtp-sink on loopback, and the raw capacity of a plain smtplib client against it.

smtp-sink is the small C SMTP server that ships with Postfix to measure SMTP clients: it
speaks ESMTP (with PIPELINING), accepts every message and throws it away. It is taken from
the Debian package without installing a mail server: ``apt-get download postfix`` into
``bench/.cache/``, unpacked there with ``dpkg-deb -x`` and run with ``LD_LIBRARY_PATH`` at the
unpacked ``usr/lib/postfix``. A binary named by ``$SMTP_SINK``, or an ``smtp-sink`` already
on ``$PATH``, is used instead when present.

Python::

    from sink import delivered, raw_capacity, smtp_sink

    with smtp_sink() as port:                # the port on 127.0.0.1
        rate = raw_capacity(port, connections=4, messages=20000)
        assert delivered(port) == 20000      # smtp-sink's own message counter

Command line (one JSON line per connection count)::

    python bench/sink.py --connections 1 2 4 8 --messages 20000
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import email.policy
import json
import multiprocessing
import os
import pwd
import queue
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
POSTFIX_ROOT = CACHE_DIR / "postfix"  # the unpacked package(s): usr/sbin/smtp-sink, usr/lib/postfix/…
DEB_DIR = CACHE_DIR / "debs"
SINK_RELPATH = Path("usr/sbin/smtp-sink")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BACKLOG = 1024  # listen(2) queue: many clients may connect at once
DEFAULT_MAX_CONNECTIONS = 1024  # smtp-sink -m: simultaneous sessions it serves (default 256)
ENVELOPE_FROM = "news@bench.example.org"
ENVELOPE_TO = "reader@bench.example.net"


class SinkError(RuntimeError):
    """smtp-sink could not be obtained or started, or a measurement went wrong."""


# --------------------------------------------------------------------------- obtaining it


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)


def _lib_dirs(root: Path) -> list[Path]:
    """Directories of shared libraries inside an unpacked package tree."""
    dirs = [root / "usr/lib/postfix"]
    for pattern in ("usr/lib/*-linux-gnu*", "lib/*-linux-gnu*", "usr/lib64", "lib64"):
        dirs.extend(p for p in sorted(root.glob(pattern)) if p.is_dir())
    return [d for d in dirs if d.is_dir()]


def sink_env(binary: Path | None = None) -> dict:
    """The environment smtp-sink runs in: LD_LIBRARY_PATH at the unpacked Postfix libraries."""
    binary = binary or ensure_smtp_sink()
    env = dict(os.environ)
    if _is_cached(binary):
        paths = [str(d) for d in _lib_dirs(POSTFIX_ROOT)]
        if env.get("LD_LIBRARY_PATH"):
            paths.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
    return env


def _is_cached(binary: Path) -> bool:
    return Path(binary).resolve() == (POSTFIX_ROOT / SINK_RELPATH).resolve()


def _missing_libraries(binary: Path) -> list[str]:
    """Shared libraries the dynamic loader cannot find for `binary` ([] if ldd is absent)."""
    if not shutil.which("ldd"):
        return []
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(str(d) for d in _lib_dirs(POSTFIX_ROOT))
    out = _run(["ldd", str(binary)], env=env).stdout
    return [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]


def _apt_download(packages: list[str]) -> list[Path]:
    """`apt-get download` the packages into DEB_DIR (one `apt-get update` if apt knows none)."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise SinkError(
            "smtp-sink is not available: this needs apt-get and dpkg-deb (Debian or Ubuntu) to fetch "
            "it from the postfix package. Alternatively install Postfix yourself and point "
            "$SMTP_SINK at its smtp-sink binary."
        )
    DEB_DIR.mkdir(parents=True, exist_ok=True)
    before = set(DEB_DIR.glob("*.deb"))
    cmd = ["apt-get", "download", "-q", *packages]
    result = _run(cmd, cwd=DEB_DIR)
    if result.returncode != 0 and os.geteuid() == 0:
        # Usually a fresh machine whose package lists were never fetched.
        update = _run(["apt-get", "update", "-q"])
        if update.returncode == 0:
            result = _run(cmd, cwd=DEB_DIR)
    if result.returncode != 0:
        hint = (
            "" if os.geteuid() == 0 else " (run `apt-get update` as root first if apt has no package lists)"
        )
        raise SinkError(f"`{' '.join(cmd)}` failed{hint}:\n{result.stderr.strip()}")
    new = sorted(set(DEB_DIR.glob("*.deb")) - before)
    return new or sorted(DEB_DIR.glob("*.deb"))


def _unpack(deb: Path) -> None:
    result = _run(["dpkg-deb", "-x", str(deb), str(POSTFIX_ROOT)])
    if result.returncode != 0:
        raise SinkError(f"dpkg-deb -x {deb.name} failed:\n{result.stderr.strip()}")


def _installed(package: str) -> bool:
    out = _run(["dpkg-query", "-W", "-f", "${db:Status-Status}", package])
    return out.returncode == 0 and out.stdout.strip() == "installed"


def _library_dependencies(packages: list[str]) -> set[str]:
    """The library packages that `packages` depend on directly (never libc6 itself)."""
    out = _run(
        [
            "apt-cache",
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *packages,
        ]
    ).stdout
    names = set()
    for line in out.splitlines():
        line = line.strip().lstrip("|")
        if line.startswith(("Depends:", "PreDepends:")):
            name = line.split(":", 1)[1].strip().split(":")[0]
            if name.startswith("lib") and not name.startswith("<") and name not in ("libc6", "libc-bin"):
                names.add(name)
    return names


def _unpack_missing_libraries(binary: Path) -> None:
    """Unpack the library packages (and theirs, a few levels down) that this machine lacks."""
    seen: set[str] = set()
    parents = ["postfix"]
    for _ in range(4):
        wanted = sorted(n for n in _library_dependencies(parents) - seen if not _installed(n))
        if not wanted:
            break
        for deb in _apt_download(wanted):
            _unpack(deb)
        seen.update(wanted)
        parents = wanted
        if not _missing_libraries(binary):
            return


def ensure_smtp_sink() -> Path:
    """Path of a runnable smtp-sink: $SMTP_SINK, one on $PATH, or Debian's postfix unpacked (once) in the cache."""
    override = os.environ.get("SMTP_SINK")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SinkError(f"$SMTP_SINK={override} is not an executable file")
        return path
    on_path = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin:/usr/local/sbin")
    if on_path:
        return Path(on_path)

    binary = POSTFIX_ROOT / SINK_RELPATH
    ready = POSTFIX_ROOT / ".ready"
    if binary.is_file() and ready.is_file():
        return binary

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _cache_lock():
        if binary.is_file() and ready.is_file():
            return binary
        debs = sorted(DEB_DIR.glob("postfix_*.deb")) or [
            d for d in _apt_download(["postfix"]) if d.name.startswith("postfix_")
        ]
        if not debs:
            raise SinkError("apt-get download postfix produced no postfix_*.deb")
        _unpack(debs[-1])
        if not binary.is_file():
            raise SinkError(f"the postfix package has no {SINK_RELPATH}")
        missing = _missing_libraries(binary)
        if missing:
            # Postfix's own libraries are in the package; others (Berkeley DB, ICU, …) come from
            # its dependencies, which a machine without Postfix may lack: unpack those too.
            _unpack_missing_libraries(binary)
            missing = _missing_libraries(binary)
            if missing:
                raise SinkError(f"smtp-sink still misses shared libraries: {', '.join(missing)}")
        ready.write_text(debs[-1].name + "\n")
    return binary


@contextlib.contextmanager
def _cache_lock():
    import fcntl

    with open(CACHE_DIR / ".postfix.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- running it


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def counters_path(port: int, host: str = DEFAULT_HOST) -> Path:
    """Where the smtp-sink started by smtp_sink() on host:port writes its counters.

    smtp-sink -c writes "sess=N quit=N mesg=N" to its stdout whenever a session ends, a QUIT
    is executed or a message's final "." is received. Its stdout is this file (named by
    address, in the temporary directory), so any process, e.g. a runner in another virtualenv,
    can read the counters of a sink it did not start.
    """
    return Path(tempfile.gettempdir()) / f"oa-bench-smtp-sink-{host}-{int(port)}.counters"


def counters(port: int, host: str = DEFAULT_HOST) -> dict[str, int]:
    """The latest counters {"sess": …, "quit": …, "mesg": …} of the smtp-sink at host:port."""
    path = counters_path(port, host)
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 512))
            tail = handle.read().decode("ascii", "replace")
    except FileNotFoundError:
        raise SinkError(
            f"no counters for {host}:{port}: no smtp-sink was started there by smtp_sink()"
        ) from None
    records = [r for r in tail.replace("\n", "\r").split("\r") if "mesg=" in r]
    if not records:
        return {"sess": 0, "quit": 0, "mesg": 0}
    fields = dict(item.split("=", 1) for item in records[-1].split() if "=" in item)
    return {key: int(value) for key, value in fields.items() if value.isdigit()}


def delivered(port: int, host: str = DEFAULT_HOST) -> int:
    """Messages the smtp-sink at host:port has received (and discarded) since it started."""
    return counters(port, host).get("mesg", 0)


def wait_delivered(port: int, count: int, timeout: float = 10.0, host: str = DEFAULT_HOST) -> int:
    """Wait until the smtp-sink at host:port has counted `count` messages (or the timeout); return its count."""
    deadline = time.monotonic() + timeout
    while True:
        got = delivered(port, host)
        if got >= count or time.monotonic() >= deadline:
            return got
        time.sleep(0.02)


_RUNNING: set[subprocess.Popen] = set()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    _RUNNING.discard(process)


@atexit.register
def _stop_all() -> None:
    for process in list(_RUNNING):
        _stop(process)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = DEFAULT_MAX_CONNECTIONS * 2 + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _wait_listening(host: str, port: int, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5) as probe:
                probe.recv(64)  # the 220 greeting: it is serving, not only bound
            return True
        except OSError:
            time.sleep(0.02)
    return False


@contextlib.contextmanager
def smtp_sink(
    port: int | None = None,
    backlog: int = DEFAULT_BACKLOG,
    *,
    host: str = DEFAULT_HOST,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    startup_timeout: float = 10.0,
):
    """Run smtp-sink on host:port (a free port if None) and yield the port (an int).

    While it runs, delivered(port), wait_delivered(port, n) and counters(port) read its counters,
    from this process or any other.

    Options: -c (counters to a file, for delivered()), -m max_connections (simultaneous
    sessions; smtp-sink's default is 256), -u nobody when run as root (smtp-sink refuses to run
    as root without -u), and the listen backlog. Nothing else: ESMTP, PIPELINING, 8BITMIME
    and DSN stay announced, messages are discarded, and nothing is logged or written per message
    but the counter line. The process is stopped on exit from the block (and at interpreter
    exit should the block be skipped).
    """
    binary = ensure_smtp_sink()
    env = sink_env(binary)
    _raise_fd_limit()
    options = ["-c", "-m", str(max_connections)]
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError as exc:
            raise SinkError(
                "running as root, smtp-sink needs -u USER, and there is no user 'nobody'"
            ) from exc
        options += ["-u", "nobody"]
    if port:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as exc:
            raise SinkError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    attempts = 1 if port else 3  # a free port picked here can be taken before smtp-sink binds it
    last_error = ""
    for _ in range(attempts):
        chosen = port or free_port(host)
        counters_file = counters_path(chosen, host)
        stderr_file = Path(tempfile.gettempdir()) / f"oa-bench-smtp-sink-{host}-{chosen}.stderr"
        with open(counters_file, "wb") as stdout, open(stderr_file, "wb") as stderr:
            process = subprocess.Popen(
                [str(binary), *options, f"inet:{host}:{chosen}", str(backlog)],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal goes to us; we stop it
            )
        _RUNNING.add(process)
        try:
            if _wait_listening(host, chosen, process, startup_timeout):
                yield chosen
                return
            last_error = stderr_file.read_text(errors="replace").strip() or f"exit status {process.poll()}"
        finally:
            _stop(process)
            for path in (counters_file, stderr_file):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    raise SinkError(f"smtp-sink did not start on {host}:{port or 'a free port'}: {last_error}")


# --------------------------------------------------------------------------- the message


def newsletter_message(target_size: int = 10 * 1024) -> bytes:
    """A realistic multipart/alternative newsletter issue of about `target_size` bytes, as sent.

    Plain text and HTML parts (quoted-printable), List-Unsubscribe headers, CRLF line ends.
    """
    paragraph = (
        "This week we shipped the archive search, answered a pile of reader mail and tried a "
        "new recipe for sourdough that rises overnight in the fridge. Thanks for reading, and "
        "for forwarding last week's issue to the friends who asked what the fuss was about. "
    )
    sections, text_parts, html_parts = 0, [], []
    while True:
        sections += 1
        title = f"Part {sections}: notes from the workshop"
        text_parts.append(f"## {title}\n\n{paragraph}\n\n* first point\n* second point\n")
        html_parts.append(
            f'<h2 style="font-family:Georgia,serif;color:#222;margin:24px 0 8px">{title}</h2>'
            f'<p style="font-family:Georgia,serif;font-size:17px;line-height:1.6;color:#333">{paragraph}</p>'
            '<ul style="font-family:Georgia,serif;color:#333"><li>first point</li><li>second point</li></ul>'
        )
        message = _build_message("\n".join(text_parts), "".join(html_parts))
        if len(message) >= target_size or sections > 1000:
            return message


def _build_message(text: str, html_body: str) -> bytes:
    footer_text = (
        "\n--\nYou get this because you subscribed at https://news.example.org/.\n"
        "Unsubscribe: https://news.example.org/u/0123456789abcdef\n"
        "Example Publishing, 1 Market Street, Springfield\n"
    )
    html = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Weekly notes</title></head>'
        '<body style="margin:0;background:#f6f6f6"><table role="presentation" width="100%"><tr><td>'
        '<div style="max-width:600px;margin:0 auto;background:#fff;padding:24px">'
        f"{html_body}"
        '<p style="font-size:12px;color:#888">You get this because you subscribed at news.example.org. '
        '<a href="https://news.example.org/u/0123456789abcdef">Unsubscribe</a><br>'
        "Example Publishing, 1 Market Street, Springfield</p></div></td></tr></table></body></html>"
    )
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = f"Weekly Notes <{ENVELOPE_FROM}>"
    msg["To"] = ENVELOPE_TO
    msg["Subject"] = "Weekly notes: archive search, reader mail and overnight sourdough"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="bench.example.org")
    msg["List-Unsubscribe"] = (
        "<https://news.example.org/u/0123456789abcdef>, <mailto:unsubscribe@news.example.org>"
    )
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text + footer_text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg.as_bytes()


# --------------------------------------------------------------------------- the client


def _client(host, port, count, message, barrier, results, index):
    """One persistent SMTP connection sending `count` copies of `message` with sendmail."""
    try:
        smtp = smtplib.SMTP(host, port, timeout=60)
        smtp.ehlo()
        barrier.wait(timeout=120)
        started = time.perf_counter()
        sendmail, rcpts = smtp.sendmail, [ENVELOPE_TO]
        for _ in range(count):
            sendmail(ENVELOPE_FROM, rcpts, message)
        finished = time.perf_counter()
        smtp.quit()
        results.put((index, count, started, finished, None))
    except Exception as exc:  # noqa: BLE001 -- reported to the parent, which raises
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put((index, 0, 0.0, 0.0, f"{type(exc).__name__}: {exc}"))


def _shares(messages: int, connections: int) -> list[int]:
    base, extra = divmod(messages, connections)
    return [base + (1 if i < extra else 0) for i in range(connections)]


def measure(
    port: int,
    connections: int = 1,
    messages: int = 10000,
    message_bytes: bytes | int | None = None,
    *,
    host: str = DEFAULT_HOST,
    mode: str = "process",
    timeout: float = 600.0,
) -> dict:
    """Send `messages` messages over `connections` persistent SMTP connections; return the figures.

    Each connection is its own process (mode="process") or thread (mode="thread") running a
    bare smtplib.sendmail loop on prepared bytes. Connecting and EHLO happen before the clock
    starts; the clock runs from the moment every client has connected to the last client's
    final reply.
    """
    if connections < 1 or messages < connections:
        raise ValueError("need connections >= 1 and messages >= connections")
    if message_bytes is None or isinstance(message_bytes, int):
        message = newsletter_message(message_bytes or 10 * 1024)
    else:
        message = bytes(message_bytes)
    shares = _shares(messages, connections)
    if mode == "process":
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(connections), ctx.Queue()
        workers = [
            ctx.Process(target=_client, args=(host, port, share, message, barrier, results, i), daemon=True)
            for i, share in enumerate(shares)
        ]
    elif mode == "thread":
        barrier, results = threading.Barrier(connections), queue.SimpleQueue()
        workers = [
            threading.Thread(
                target=_client, args=(host, port, share, message, barrier, results, i), daemon=True
            )
            for i, share in enumerate(shares)
        ]
    else:
        raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
    for worker in workers:
        worker.start()
    reports = []
    deadline = time.monotonic() + timeout
    try:
        while len(reports) < len(workers):
            try:
                reports.append(results.get(timeout=0.5))
                continue
            except queue.Empty:
                pass
            if time.monotonic() > deadline:
                raise SinkError(f"clients still sending after {timeout:.0f} s")
            if mode == "process" and all(w.exitcode is not None for w in workers):
                with contextlib.suppress(queue.Empty):  # a report still in the pipe
                    while len(reports) < len(workers):
                        reports.append(results.get(timeout=1))
                if len(reports) < len(workers):
                    codes = [w.exitcode for w in workers]
                    raise SinkError(f"client processes ended without reporting (exit codes {codes})")
    finally:
        if len(reports) < len(workers):
            with contextlib.suppress(Exception):
                barrier.abort()
        for worker in workers:
            worker.join(timeout=10)
            if mode == "process" and worker.is_alive():
                worker.kill()
    failures = [error for *_, error in reports if error]
    if failures:
        raise SinkError(f"{len(failures)} of {connections} clients failed; first: {failures[0]}")
    sent = sum(count for _, count, *_ in reports)
    seconds = max(r[3] for r in reports) - min(r[2] for r in reports)
    return {
        "connections": connections,
        "mode": mode,
        "messages": sent,
        "message_size": len(message),
        "seconds": round(seconds, 4),
        "msgs_per_s": round(sent / seconds, 1),
    }


def raw_capacity(
    port: int,
    connections: int = 1,
    messages: int = 10000,
    message_bytes: bytes | int | None = None,
    *,
    host: str = DEFAULT_HOST,
    mode: str = "process",
) -> float:
    """Messages per second a plain smtplib loop pushes into the sink at `port`.

    `connections` persistent connections, each in its own process (the default: measured faster
    than threads, which share the GIL) sending `messages` in all. `message_bytes` is the message
    as sent (bytes), or a target size in bytes for the built-in ~10 KB newsletter, or None for it.
    """
    return measure(port, connections, messages, message_bytes, host=host, mode=mode)["msgs_per_s"]


# --------------------------------------------------------------------------- command line


def cpu_busy_percent(interval: float = 1.0) -> float | None:
    """How busy all CPUs were over the next `interval` seconds, in percent (None off Linux).

    The machine may be shared: a figure taken while something else used the CPUs says little.
    """

    def sample():
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy1, total1 = sample()
        time.sleep(interval)
        busy2, total2 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(100.0 * (busy2 - busy1) / max(1, total2 - total1), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Raw capacity of smtp-sink with plain smtplib clients.")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[4], help="one run per value (default 4)"
    )
    parser.add_argument("--messages", type=int, default=20000, help="messages per run (default 20000)")
    parser.add_argument("--message-size", type=int, default=10 * 1024, help="approximate bytes per message")
    parser.add_argument("--mode", choices=["process", "thread"], default="process")
    parser.add_argument("--repeat", type=int, default=1, help="runs per connection count")
    parser.add_argument(
        "--port", type=int, help="use an smtp-sink already listening there instead of starting one"
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument(
        "--serve", action="store_true", help="only run the sink: print its port, wait for Ctrl-C"
    )
    args = parser.parse_args(argv)

    if args.serve:
        with smtp_sink(args.port, host=args.host) as port:
            print(json.dumps({"smtp_sink": f"{args.host}:{port}", "port": port}), flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
            finally:  # also on SIGTERM (SystemExit)
                print(json.dumps({"port": port, **counters(port, args.host)}), flush=True)
        return 0

    message = newsletter_message(args.message_size)

    def run(port):
        try:
            delivered(port, args.host)
            check = True
        except SinkError:
            check = False  # a server not started by smtp_sink(): its count is unknown here
        for connections in args.connections:
            for _ in range(args.repeat):
                before = delivered(port, args.host) if check else 0
                busy = cpu_busy_percent()
                figures = measure(port, connections, args.messages, message, host=args.host, mode=args.mode)
                line = {"bench": "smtp_sink_raw", **figures}
                if check:
                    line["delivered"] = (
                        wait_delivered(port, before + figures["messages"], host=args.host) - before
                    )
                line["cpu_busy_before"], line["cpu_busy_after"] = busy, cpu_busy_percent()
                print(json.dumps(line), flush=True)
                if check and line["delivered"] != figures["messages"]:
                    raise SinkError(
                        f"smtp-sink counted {line['delivered']} of {figures['messages']} messages"
                    )

    if args.port:
        run(args.port)
    else:
        with smtp_sink(host=args.host) as port:
            run(port)
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the sink is stopped on kill, too
    try:
        sys.exit(main())
    except SinkError as exc:
        print(f"sink.py: {exc}", file=sys.stderr)
        sys.exit(1)
