"""Real Celery worker processes for tests, against the test database and Redis."""

import contextlib
import subprocess
import sys
import time
import uuid

from .servers import ROOT, project_env


class WorkerProcess:
    def __init__(self, process, log_path, hostname):
        self.process = process
        self.log_path = log_path
        self.hostname = hostname

    def log(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.process.poll() is None

    def kill(self, sig):
        """Signal the whole worker (main process and pool children), e.g. SIGKILL mid-send."""
        import os

        os.killpg(self.process.pid, sig)


@contextlib.contextmanager
def celery_worker(
    tmp_path, *, database_url, redis_url, queues="transactional,default,bulk", concurrency=1, name=None,
    beat=False, **env
):
    """Start `celery worker` in its own process group and wait until it is ready to consume.

    With beat=True it also runs the periodic tasks (the send watchdog, scheduled issues).
    """
    hostname = f"{name or 'test'}-{uuid.uuid4().hex[:6]}@%h"
    log_path = tmp_path / f"worker-{hostname.split('@')[0]}.log"
    log = open(log_path, "wb")
    beat_args = ["--beat", "--schedule", str(tmp_path / f"beat-{uuid.uuid4().hex[:6]}")] if beat else []
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "ownedaudience", "worker", "--loglevel", "INFO",
         "-Q", queues, "-n", hostname, "--concurrency", str(concurrency),
         "--without-gossip", "--without-mingle", *beat_args],
        cwd=ROOT,
        env=project_env(DATABASE_URL=database_url, REDIS_URL=redis_url, **env),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    worker = WorkerProcess(process, log_path, hostname)
    try:
        deadline = time.monotonic() + 60
        while "ready." not in worker.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.log()}")
            time.sleep(0.1)
        yield worker
    finally:
        if process.poll() is None:
            import os
            import signal

            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
