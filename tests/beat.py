"""A real `celery beat` process for tests, as production runs it beside the workers."""

import contextlib
import subprocess
import sys

from .servers import ROOT, project_env


@contextlib.contextmanager
def celery_beat(tmp_path, **env):
    log = open(tmp_path / "beat.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ownedaudience",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        cwd=ROOT,
        env=project_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
