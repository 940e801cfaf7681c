"""Issue "The embedded broker crashed the worker of `make run`": console/supervise.py, which `make run` runs, starts
the worker again when it dies, with growing pauses while it keeps dying, and Ctrl-C stops everything it started.

Stand-in commands (shell lines) play the web server and the worker, so these run in seconds.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, wait_until

SUPERVISE = [sys.executable, "-P", str(ROOT / "console" / "supervise.py")]  # as `make run` runs it


def alive(pid):
    """A process that exists and is not a zombie waiting for its parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def pids(path):
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def supervise(tmp_path, worker):
    web = f"sh -c 'echo $$ >> {tmp_path}/web.pids; exec sleep 300'"
    return subprocess.Popen(SUPERVISE + ["--web", web, "--worker", worker])


def test_a_worker_that_keeps_dying_is_started_again_after_growing_pauses(tmp_path):
    starts = tmp_path / "starts"
    proc = supervise(tmp_path, f"sh -c 'date +%s.%N >> {starts}; exit 3'")
    try:
        time.sleep(5.5)  # starts at about 0, 1 and 3 s; the next would be at 7 s
        times = [float(t) for t in starts.read_text().split()]
        assert len(times) == 3, times  # not a busy loop
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert 0.9 < gaps[0] < 1.8 and 1.9 < gaps[1] < 2.8, gaps
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    (web,) = pids(tmp_path / "web.pids")
    assert not alive(web)


def test_a_killed_worker_is_started_again_and_ctrl_c_stops_everything(tmp_path):
    # the worker's main process writes its pid and starts a "pool" child in its own process group
    worker = f"sh -c 'echo $$ >> {tmp_path}/worker.pids; sleep 300 & echo $! >> {tmp_path}/pool.pids; wait'"
    proc = supervise(tmp_path, worker)
    try:
        assert wait_until(lambda: len(pids(tmp_path / "worker.pids")) == 1 and pids(tmp_path / "pool.pids"), 10)
        first_worker, first_pool = pids(tmp_path / "worker.pids")[0], pids(tmp_path / "pool.pids")[0]
        os.kill(first_worker, signal.SIGKILL)  # the main process dies alone, as a crash would
        assert wait_until(lambda: len(pids(tmp_path / "worker.pids")) == 2, 10)  # started again after ~1 s
        assert wait_until(lambda: not alive(first_pool), 5)  # what the dead worker left is not left running
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(15) == 0
    started = pids(tmp_path / "worker.pids") + pids(tmp_path / "pool.pids") + pids(tmp_path / "web.pids")
    assert len(started) == 5
    assert wait_until(lambda: not any(alive(pid) for pid in started), 5), [p for p in started if alive(p)]


def test_when_the_web_server_ends_the_worker_is_stopped(tmp_path):
    web = f"sh -c 'echo $$ >> {tmp_path}/web.pids; sleep 2'"
    worker = f"sh -c 'echo $$ >> {tmp_path}/worker.pids; exec sleep 300'"
    proc = subprocess.Popen(SUPERVISE + ["--web", web, "--worker", worker])
    assert proc.wait(20) == 1  # the web server's end is a failure of `make run`, not a restart
    (pid,) = pids(tmp_path / "worker.pids")
    assert wait_until(lambda: not alive(pid), 5)


def test_a_killed_supervisor_leaves_no_worker_behind(tmp_path):
    worker = f"sh -c 'echo $$ >> {tmp_path}/worker.pids; exec sleep 300'"
    proc = supervise(tmp_path, worker)
    assert wait_until(lambda: pids(tmp_path / "worker.pids") and pids(tmp_path / "web.pids"), 10)
    proc.kill()
    proc.wait(5)
    started = pids(tmp_path / "worker.pids") + pids(tmp_path / "web.pids")
    assert wait_until(lambda: not any(alive(pid) for pid in started), 5)
