"""Pick the services `make test` runs against and say which (printed as shell exports).

PostgreSQL and Redis are used when DATABASE_URL / CELERY_BROKER_URL are set or
answer at their default local addresses; else the embedded defaults (SQLite,
a broker on disk). With REQUIRE_SERVICES=1 (CI) a missing one is an error.
"""

import os
import shlex
import socket

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cloud_backup"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/15"


def answers(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def main():
    required = os.environ.get("REQUIRE_SERVICES") == "1"
    exports = {}
    database = os.environ.get("DATABASE_URL")
    if not database and answers("127.0.0.1", 5432):
        database = DEFAULT_DATABASE_URL
    broker = os.environ.get("CELERY_BROKER_URL")
    if not broker and answers("127.0.0.1", 6379):
        broker = DEFAULT_BROKER_URL
    if required and not (database and database.startswith("postgres")):
        print("echo 'PostgreSQL is required (REQUIRE_SERVICES=1) but not reachable' >&2; exit 1")
        return
    if required and not (broker and broker.startswith("redis")):
        print("echo 'Redis is required (REQUIRE_SERVICES=1) but not reachable' >&2; exit 1")
        return
    if database:
        exports["DATABASE_URL"] = database
    # A database of its own per run, so that runs side by side do not collide.
    exports.setdefault("TEST_DATABASE_NAME", os.environ.get("TEST_DATABASE_NAME") or f"test_cloud_backup_{os.getpid()}")
    if broker:
        exports["CELERY_BROKER_URL"] = broker
    banner = (
        f"make test: database {'PostgreSQL ' + database.split('@')[-1] if database else 'SQLite (embedded)'}; "
        f"broker {'Redis ' + broker.split('://')[-1] if broker else 'SQLite file (embedded)'}"
    )
    for name, value in exports.items():
        print(f"export {name}={shlex.quote(value)}")
    print(f"echo {shlex.quote(banner)}")


if __name__ == "__main__":
    main()
