"""What `make run` promises a newcomer: on the demo page, subscribe, confirm from the dev outbox, unsubscribe.

Runs scripts/dev.py as it is (SQLite, the file broker, a worker with beat) on a free port.
"""

import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from .servers import ROOT, free_port, get, project_env


def post(url, data):
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode())
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, response.read().decode()


def test_make_run_takes_a_fan_from_the_demo_page_to_unsubscribed(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = project_env(
        VAR_DIR=tmp_path,
        DATABASE_URL="",
        REDIS_URL="",
        DEBUG="true",
        SECRET_KEY="",
        EMAIL_URL="outbox://",
        RUN_ADDRESS=f"127.0.0.1:{port}",
        SITE_URL=base,
    )
    log = open(tmp_path / "run.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "scripts/dev.py"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(f"{base}/demo/", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.5)
        status, page = get(f"{base}/demo/")
        assert "Demo Newsletter" in page and 'name="email"' in page
        assert f"{base}/demo/" in (tmp_path / "run.log").read_text()  # the address is printed

        status, answer = post(f"{base}/demo/subscribe", {"email": "newcomer@example.com", "form": "page"})
        assert status == 200 and "Check your inbox" in answer

        database = sqlite3.connect(tmp_path / "ownedaudience.sqlite3", timeout=20)
        deadline = time.monotonic() + 60
        row = None
        while row is None and time.monotonic() < deadline:
            row = database.execute(
                "select text_body, newsletter_slug from newsletters_outboxmessage where \"to\" = 'newcomer@example.com'"
            ).fetchone()
            time.sleep(0.5)
        assert row, (tmp_path / "run.log").read_text()[-3000:]
        text_body, newsletter_slug = row
        assert newsletter_slug == "demo"
        confirm = re.search(r"http://\S+/confirm/\S+", text_body).group(0)
        assert "Yes, subscribe me" in get(confirm)[1]
        assert "You're in!" in post(confirm, {})[1]

        # The demo's welcome email arrives in the outbox with its unsubscribe link.
        deadline = time.monotonic() + 60
        welcome = None
        while welcome is None and time.monotonic() < deadline:
            welcome = database.execute(
                "select text_body from newsletters_outboxmessage where subject = 'Welcome to the Demo Newsletter'"
            ).fetchone()
            time.sleep(0.5)
        assert welcome, (tmp_path / "run.log").read_text()[-3000:]
        unsubscribe = re.search(r"http://\S+/unsubscribe/\S+", welcome[0]).group(0)
        assert "Unsubscribe from Demo Newsletter?" in get(unsubscribe)[1]
        status, answer = post(unsubscribe, {"List-Unsubscribe": "One-Click"})
        assert status == 200 and "You are unsubscribed" in answer
        assert database.execute("select status from subscribers_subscription").fetchone()[0] == "unsubscribed"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            import os

            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
