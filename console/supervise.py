"""`make run`'s supervisor: the console's web server and a Celery worker, the worker started again when it dies.

    python -P console/supervise.py --web 'COMMAND' --worker 'COMMAND'

(-P: console/ is not put first on the import path, where console/selectors.py would shadow the standard
library's `selectors`.) Each command is a shell line, run again at every start, so the worker's queue list
is read again. A worker that dies is started again after a pause that doubles while it keeps dying at once
(1 s, 2 s, ... 60 s), so it cannot spin the CPU. Ctrl-C or SIGTERM stops both; so does the web server's end.
Standard library only: it runs before anything is imported from the project.
"""

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

FIRST_PAUSE, LONGEST_PAUSE = 1.0, 60.0
HEALTHY_AFTER = 60.0  # a worker that ran this long died of something new: start again at once
STOP_GRACE = 20.0  # the worker's soft shutdown (CLOUD_BACKUP_WORKER_STOP_SECONDS, 8 s) and its end, before SIGKILL


def say(text):
    print(f"[supervise] {text}", file=sys.stderr, flush=True)


LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def ask_parent_death_signal():
    """In the child: SIGTERM when the supervisor dies, even by SIGKILL, so no worker is left behind (Linux)."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(command):
    # A process group of its own: the supervisor signals the whole worker (its pool processes included).
    return subprocess.Popen(
        ["/bin/sh", "-c", "exec " + command], start_new_session=True, preexec_fn=ask_parent_death_signal
    )


def signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()  # the main process only: a Celery worker then stops its pool after the running tasks
    deadline = time.monotonic() + STOP_GRACE
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"pid {proc.pid} did not stop in {STOP_GRACE:.0f} s: killed")
        signal_group(proc, signal.SIGKILL)  # whatever is left of its group (a pool process, a stuck one)
        proc.wait()


def describe(returncode):
    return f"signal {-returncode}" if returncode < 0 else f"status {returncode}"


def supervise(web_command, worker_command):
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    web = start(web_command)
    worker, started = start(worker_command), time.monotonic()
    pause, restart_at = FIRST_PAUSE, None
    try:
        while not stopping:
            if web.poll() is not None:
                say(f"the web server exited ({describe(web.returncode)}): stopping the worker")
                return web.returncode or 1
            if worker is not None and worker.poll() is not None:
                signal_group(worker, signal.SIGKILL)  # its pool processes, if the main process died alone
                ran = time.monotonic() - started
                if ran >= HEALTHY_AFTER:
                    pause = FIRST_PAUSE
                say(
                    f"the worker exited ({describe(worker.returncode)}) after {ran:.0f} s: starting it in {pause:.0f} s"
                )
                worker, restart_at = None, time.monotonic() + pause
                pause = min(pause * 2, LONGEST_PAUSE)
            if worker is None and time.monotonic() >= restart_at:
                worker, started = start(worker_command), time.monotonic()
            time.sleep(0.2)
        return 0
    finally:
        stop([p for p in (worker, web) if p is not None])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web", required=True, help="shell line of the web server")
    parser.add_argument("--worker", required=True, help="shell line of the Celery worker")
    args = parser.parse_args()
    sys.exit(supervise(args.web, args.worker))


if __name__ == "__main__":
    main()
