"""The service's master secret (rule T3): kept outside the database, the root of every key the service derives
(vault service keys, sealed tenant credentials, the audit chain's key)."""

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def master_secret():
    if settings.MASTER_SECRET:
        return bytes.fromhex(settings.MASTER_SECRET)
    return read_or_create_secret_file(Path(settings.MASTER_SECRET_FILE), 32)


def derived_key(purpose):
    """A 32-byte key for one purpose (bytes); derived on use, never stored."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master_secret())


def read_or_create_secret_file(path, size):
    """Read a secret file, creating it (mode 0600) on first use; concurrent creators agree."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(size))
    try:
        os.link(tmp, path)  # fails if another process created it first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()
