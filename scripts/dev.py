"""`make run`: migrate, make the demo newsletter, then serve the web app and a Celery worker.

Ctrl-C stops both. Uses SQLite and a file-based broker unless DATABASE_URL / REDIS_URL say otherwise.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DEBUG", "true")
MANAGE = [sys.executable, str(ROOT / "manage.py")]
ADDRESS = os.environ.get("RUN_ADDRESS", "127.0.0.1:8000")
DEMO = ["create_newsletter", "demo", "--name", "Demo Newsletter", "--owner", "creator@example.com",
        "--postal-address", "1 Demo Street, Example City", "--reset-password",
        "--description", "A newsletter to try ownedaudience with: subscribe, confirm from the dev outbox, unsubscribe.",
        "--welcome-subject", "Welcome to the Demo Newsletter",
        "--welcome-body", "Thanks for confirming! This is the welcome email a creator writes in the admin.\n\n"
        "Every email from here on has a one-click unsubscribe link at the bottom."]


def setup():
    """Everything before the servers start; the tests run this on an empty SQLite database."""
    subprocess.run(MANAGE + ["migrate", "--no-input", "-v", "0"], check=True, cwd=ROOT)
    subprocess.run(MANAGE + DEMO, check=True, cwd=ROOT)


def serve():
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "ownedaudience", "worker", "--loglevel", "INFO",
         "--concurrency", "2", "-Q", "transactional,default,bulk", "--beat",
         "--schedule", str(ROOT / "var" / "celerybeat-schedule")],
        cwd=ROOT,
    )
    web = subprocess.Popen(MANAGE + ["runserver", "--noreload", ADDRESS], cwd=ROOT)
    print(f"\nownedaudience is up: http://{ADDRESS}/admin/  (dev outbox: Admin → Dev outbox messages)")
    print(f"The demo newsletter's page: http://{ADDRESS}/demo/")
    print("Ctrl-C stops the web server and the worker.\n", flush=True)
    try:
        while web.poll() is None and worker.poll() is None:
            try:
                web.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        pass
    finally:
        for process in (web, worker):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (web, worker):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def make_var_dirs():
    """The SQLite file, the file broker's folders (kombu does not make them) and the beat schedule."""
    var = Path(os.environ.get("VAR_DIR") or ROOT / "var")
    for folder in (var, var / "broker" / "queue", var / "broker" / "processed", ROOT / "var"):
        folder.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    make_var_dirs()
    setup()
    if "--setup-only" not in sys.argv:
        serve()
