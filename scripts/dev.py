"""`make run`: migrate, make the demo newsletter, then serve the web app and a Celery worker (with beat).

Ctrl-C (SIGINT), SIGTERM or SIGHUP, to this process or to its whole process group, stops everything
within a few seconds. Uses SQLite and a file-based broker unless DATABASE_URL / REDIS_URL say otherwise.
RUN_ADDRESS (runserver's PORT or HOST:PORT, default 127.0.0.1:8000) is where it serves; without
SITE_URL, links in emails and pages point there too (ownedaudience/settings.py).
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DEBUG", "true")
MANAGE = [sys.executable, str(ROOT / "manage.py")]
ADDRESS = os.environ.get("RUN_ADDRESS", "").strip() or "127.0.0.1:8000"
if ADDRESS.isdigit():
    ADDRESS = f"127.0.0.1:{ADDRESS}"
os.environ["RUN_ADDRESS"] = ADDRESS  # the children's settings derive the default SITE_URL from it
BROWSE = ADDRESS.replace("0.0.0.0:", "127.0.0.1:", 1).replace("[::]:", "[::1]:", 1)
STOP_GRACE_SECONDS = 8  # then whatever is left is killed (a warm worker shutdown takes about 5 s)
DEMO = ["create_newsletter", "demo", "--name", "Demo Newsletter", "--owner", "creator@example.com",
        "--postal-address", "1 Demo Street, Example City", "--reset-password",
        "--description", "A newsletter to try ownedaudience with: subscribe, confirm from the dev outbox, unsubscribe.",
        "--welcome-subject", "Welcome to the Demo Newsletter",
        "--welcome-body", ("Thanks for confirming! This is the welcome email a creator writes in the admin.\n\n"
                           "Every email from here on has a one-click unsubscribe link at the bottom.")]


def var_dir():
    return Path(os.environ.get("VAR_DIR") or ROOT / "var")


def setup():
    """Everything before the servers start; the tests run this on an empty SQLite database."""
    subprocess.run(MANAGE + ["migrate", "--no-input", "-v", "0"], check=True, cwd=ROOT)
    subprocess.run(MANAGE + DEMO, check=True, cwd=ROOT)


class Stop(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived."""


def _stop(signum, frame):
    # Once is enough: make forwards its SIGTERM too, and a second signal must not cut the cleanup short.
    _ignore_stop_signals()
    raise Stop(signal.Signals(signum).name)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _ignore_stop_signals():
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child, before exec: get SIGTERM if this script dies without stopping it (Linux only)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(command):
    """A child in a session (so a process group) of its own, so that a signal to this script's group
    (Ctrl-C in the terminal, `kill -TERM -PGID`) reaches only this script, which stops the child in
    order. Celery's pool processes and embedded beat must not get the signal directly: a pool process
    killed while it holds the pool's queue lock leaves the worker hanging in its shutdown."""
    # This script runs no threads, so preexec_fn is safe here.
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509


def stop(children):
    """SIGTERM to each child (runserver exits, the worker does a warm shutdown with its beat), then
    SIGKILL to the process group of any child still there after STOP_GRACE_SECONDS."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        if child.poll() is None:
            print(f"{' '.join(child.args[1:4])} did not stop in {STOP_GRACE_SECONDS} s: killed.", file=sys.stderr)
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()


def serve():
    children = []
    try:
        children.append(start(
            [sys.executable, "-m", "celery", "-A", "ownedaudience", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "-Q", "transactional,default,bulk", "--beat",
             "--schedule", str(var_dir() / "celerybeat-schedule")]
        ))
        children.append(start(MANAGE + ["runserver", "--noreload", ADDRESS]))
        print(f"\nownedaudience is up: http://{BROWSE}/admin/  (dev outbox: Admin → Dev outbox messages)")
        print(f"The demo newsletter's page: http://{BROWSE}/demo/")
        print("Ctrl-C stops the web server and the worker.\n", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except Stop:
        pass
    finally:
        _ignore_stop_signals()
        stop(children)
        print("Stopped.", flush=True)


def make_var_dirs():
    """The SQLite file, the file broker's folders (kombu does not make them) and the beat schedule."""
    var = var_dir()
    for folder in (var, var / "broker" / "queue", var / "broker" / "processed"):
        folder.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    try:
        make_var_dirs()
        setup()
        if "--setup-only" not in sys.argv:
            serve()
    except Stop:
        sys.exit(130)
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode or 1)
