"""The backup engine: read a source, write its new chunks into packs, describe it in a manifest.

`PointWriter` owns the chunk side (dedup against the vault's chunk index, packs,
stored bytes); `read_file_tree` and `read_bucket` turn a source into manifest
entries. The service `vaults.services.run_backup_job` drives them and commits
the point.
"""

import mimetypes
import os
import stat
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import blake3
from django.db import connection, transaction
from django.utils import timezone
from pyfastcdc.cy import FastCDC

from ..models import Chunk, Pack
from .chunkstore import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, PACK_TARGET, new_pack_name, pack_key
from .tenantfs import OpenRoot, ReadTimedOut, TimedReads, UnsafePath, key_problem, open_regular, walk

READ_BLOCK = 8 * 1024 * 1024
_cdc = FastCDC(CHUNK_AVG, min_size=CHUNK_MIN, max_size=CHUNK_MAX)


def index_pack(vault, key, size, chunks):
    """Record a stored pack and its chunks [(id, offset, length, size)] in the chunk index (in a transaction).

    The chunks go in with one executemany: a pack holds hundreds of them, and building a
    model object per row cost more than copying the pack. A chunk already indexed (another
    writer stored it first) keeps its row.
    """
    pack = Pack.objects.create(vault=vault, key=key, size=size)
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(c) for c in ("vault_id", "chunk_id", "pack_id", "offset", "length", "raw_length", "created")
    )
    created = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {quote(Chunk._meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(vault.pk, cid, pack.pk, offset, length, raw, created) for cid, offset, length, raw in chunks],
        )
    return pack


class SourceError(Exception):
    """The source cannot be read at all (missing path, no permission, no such bucket)."""


class Sealed:
    """One chunk on its way into a pack; `blob` is dropped once it is in the pack buffer."""

    __slots__ = ("cid", "blob", "raw_length")

    def __init__(self, cid, blob, raw_length):
        self.cid, self.blob, self.raw_length = cid, blob, raw_length


BATCH_BYTES = 1024 * 1024


class _Batch:
    __slots__ = ("items", "size", "future")

    def __init__(self):
        self.items, self.size, self.future = [], 0, None


class Slot:
    """A chunk's place in a batch; `result()` waits for the batch to be sealed."""

    __slots__ = ("batch", "index")

    def __init__(self, batch, index):
        self.batch, self.index = batch, index

    def result(self):
        return self.batch.future.result()[self.index]


class PointWriter:
    """Stores the chunks of a new point: each chunk the vault lacks is sealed into a pack.

    Sealing (hash, compress, encrypt) runs on a small thread pool while the reader
    goes on cutting the next chunks (at most `depth` batches in flight), and a full
    pack is uploaded in the background while the next one fills, so reading, CPU
    and the store work at the same time with bounded memory.
    """

    def __init__(self, vault, store, codec, threads=2, depth=8):
        self.vault = vault
        self.store = store
        self.codec = codec
        self.known = {bytes(c) for c in Chunk.objects.filter(vault=vault).values_list("chunk_id", flat=True)}
        self.pending = {}
        self.buf = bytearray()
        self.refs = set()
        self.stored_bytes = 0
        self.new_chunks = 0
        self.depth = depth
        self.inflight = deque()
        self.batch = None
        self.pool = ThreadPoolExecutor(threads)
        self.uploader = ThreadPoolExecutor(1)
        self.upload = None

    def submit(self, data):
        """Queue one chunk's plaintext; the returned slot's `result()` gives its `Sealed` (id and size).

        Chunks go to the pool in batches of about 1 MiB: one task per 64 KiB chunk would
        spend more time in the pool's bookkeeping than in hashing and sealing.
        """
        batch = self.batch
        if batch is None:
            batch = self.batch = _Batch()
        batch.items.append(data)
        batch.size += len(data)
        slot = Slot(batch, len(batch.items) - 1)
        if batch.size >= BATCH_BYTES:
            self._submit_batch()
        return slot

    def _submit_batch(self):
        batch, self.batch = self.batch, None
        if batch is None:
            return
        batch.future = self.pool.submit(self._seal_many, batch.items)
        self.inflight.append(batch)
        while len(self.inflight) > self.depth:
            self._drain_one()

    def _seal_many(self, items):
        return [self._seal(data) for data in items]

    def drain(self):
        self._submit_batch()
        while self.inflight:
            self._drain_one()

    def _drain_one(self):
        batch = self.inflight.popleft()
        for sealed in batch.future.result():
            self.add_sealed(sealed)
        batch.items = None

    def add(self, data):
        """Store one chunk's plaintext (if new) now; return its id and size."""
        slot = self.submit(bytes(data))
        self.drain()
        return slot.result().cid, len(data)

    def _seal(self, data):
        cid = self.codec.chunk_id(data)
        if cid in self.known or cid in self.pending:
            return Sealed(cid, None, len(data))
        return Sealed(cid, self.codec.seal_chunk(cid, data), len(data))

    def reuse(self, chunk_ids):
        """Reference chunks of the previous point without reading them again."""
        self.refs.update(chunk_ids)

    def add_sealed(self, sealed):
        cid, blob = sealed.cid, sealed.blob
        sealed.blob = None
        self.refs.add(cid)
        if blob is not None and cid not in self.known and cid not in self.pending:
            self.pending[cid] = (len(self.buf), len(blob), sealed.raw_length)
            self.buf += blob
            self.new_chunks += 1
            if len(self.buf) >= PACK_TARGET:
                self.flush(wait=False)

    def flush(self, wait=True):
        """Upload the current pack, then index its chunks; the previous upload must finish first."""
        if wait:
            self.drain()
        self._finish_upload()
        if self.pending:
            buf, pending = self.buf, self.pending
            self.buf, self.pending = bytearray(), {}
            self.upload = self.uploader.submit(self._store_pack, buf, pending)
            self.known.update(pending)
        if wait:
            self._finish_upload()

    def _finish_upload(self):
        """Wait for the pack in flight, then index its chunks (on this thread's database connection)."""
        if self.upload is None:
            return
        upload, self.upload = self.upload, None
        key, size, pending = upload.result()
        with transaction.atomic():
            index_pack(self.vault, key, size, [(cid, o, n, r) for cid, (o, n, r) in pending.items()])
        self.stored_bytes += size

    def _store_pack(self, buf, pending):
        key = pack_key(self.vault, new_pack_name())
        self.store.put(key, buf)
        return key, len(buf), pending

    def close(self):
        try:
            self.flush()
        finally:
            self.pool.shutdown()
            self.uploader.shutdown()

    def abort(self):
        self.pool.shutdown(cancel_futures=True)
        self.uploader.shutdown(cancel_futures=True)


def chunk_stream(writer, stream, on_bytes):
    """Cut a byte stream into content-defined chunks and queue them; return (chunks, size, content hash).

    The chunk list holds futures until `resolve_chunks` turns them into [id, size] pairs
    once the writer has drained.
    """
    hasher = blake3.blake3()
    chunks, size = [], 0
    for piece in _cdc.cut_stream(stream):
        data = bytes(piece.data)
        hasher.update(data)
        size += len(data)
        chunks.append(writer.submit(data))
        on_bytes(len(data))
    return chunks, size, hasher.hexdigest()


def resolve_chunks(entries):
    """Turn the futures of `chunk_stream` into [hex id, size] pairs (after the writer has drained)."""
    for entry in entries:
        chunks = entry.get("chunks")
        if chunks and not isinstance(chunks[0], list):
            entry["chunks"] = [[f.result().cid.hex(), f.result().raw_length] for f in chunks]
    return entries


def open_source(path, check=None):
    """Open a file-tree source's root once, without following a link at its end (rule T1).

    `check(real_path)` says why what was opened may not be read (it is asked about the
    opened directory's real path, not the name): the source is then refused.
    """
    try:
        return OpenRoot(path, check=check)
    except UnsafePath as exc:
        raise SourceError(str(exc)) from None


def scan_file_tree(root, warnings=None):
    """Every entry under an open root (or the root itself, if it is a file), in path order.

    Yields (rel, parent fd, name, lstat); the parent's descriptor is open until the next
    entry, so the entry can be opened relative to it.
    """
    if not root.is_dir:
        yield root.name, None, None, root.stat
        return

    def on_problem(rel, text):
        if warnings is not None:
            warnings.append({"path": rel, "problem": text})

    yield from walk(root.fd, on_problem)


class Progress:
    """Counts files and bytes; calls `save` at most every `interval` seconds."""

    def __init__(self, save, interval=0.5):
        self.files = 0
        self.bytes = 0
        self.save = save
        self.interval = interval
        self.last = 0.0

    def add_bytes(self, n):
        self.bytes += n
        self.tick()

    def add_file(self):
        self.files += 1
        self.tick()

    def tick(self, force=False):
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            self.last = now
            self.save(self)


def read_file_tree(writer, root, progress, warnings, parent=None):
    """Manifest entries of an open root (`open_source`): files, dirs, symlinks, modes, mtimes.

    Every entry is opened relative to its parent directory's descriptor without following
    a link, and taken for what fstat on the open descriptor says it is: a symlink is
    recorded as a link, anything but a file, a directory or a link is skipped (rule T1).
    `parent` maps paths to the entries of the source's previous point: a file whose
    size, mtime, ctime and inode are unchanged reuses its chunk list unread.
    """
    parent = parent or {}
    entries = []
    for rel, dir_fd, name, st in scan_file_tree(root, warnings):
        entry = {"path": rel, "mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}
        if stat.S_ISDIR(st.st_mode):
            entry["type"] = "dir"
        elif stat.S_ISLNK(st.st_mode):
            try:
                entry.update(type="symlink", target=os.readlink(name, dir_fd=dir_fd))
            except OSError:
                warnings.append({"path": rel, "problem": "changed while it was being read: skipped"})
                continue
        elif stat.S_ISREG(st.st_mode):
            entry["type"] = "file"
            previous = parent.get(rel)
            if previous and _unchanged(previous, st):
                writer.reuse(bytes.fromhex(c) for c, _ in previous["chunks"])
                entry.update(
                    size=previous["size"],
                    chunks=previous["chunks"],
                    hash=previous["hash"],
                    ctime_ns=st.st_ctime_ns,
                    ino=st.st_ino,
                )
                progress.add_bytes(st.st_size)
                entries.append(entry)
                progress.add_file()
                continue
            try:
                fd = os.dup(root.fd) if dir_fd is None else open_regular(dir_fd, name)[0]
            except FileNotFoundError:
                warnings.append({"path": rel, "problem": "vanished before it could be read"})
                continue
            except PermissionError:
                warnings.append({"path": rel, "problem": "cannot be read (permission denied)"})
                continue
            except UnsafePath as exc:
                warnings.append({"path": rel, "problem": f"{exc} now (it was a file when listed): skipped"})
                continue
            except OSError as exc:  # a socket (ENXIO), a leased file (EAGAIN), ...
                warnings.append({"path": rel, "problem": f"cannot be opened ({exc.strerror}): skipped"})
                continue
            with open(fd, "rb", buffering=0) as f:
                f.name = rel
                opened = os.fstat(fd)
                if opened.st_nlink > 1 and opened.st_uid != root.stat.st_uid and dir_fd is not None:
                    # rule T1: another link to someone else's file is not the tenant's to read
                    warnings.append({"path": rel, "problem": "is a hard link to a file of another owner: skipped"})
                    continue
                if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                    st = opened  # replaced by another file since it was listed: read what was opened
                try:
                    with TimedReads(f) as timed:
                        chunks, size, digest = chunk_stream(writer, timed, progress.add_bytes)
                except ReadTimedOut as exc:
                    raise SourceError(f"{rel}: {exc.strerror} while reading it; the backup stopped there.") from None
                after = os.fstat(f.fileno())
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns) or size != after.st_size:
                warnings.append({"path": rel, "problem": "changed while it was being read"})
            entry.update(
                mode=stat.S_IMODE(after.st_mode),
                size=size,
                chunks=chunks,
                hash=digest,
                mtime_ns=after.st_mtime_ns,
                ctime_ns=after.st_ctime_ns,
                ino=after.st_ino,
            )
        else:
            warnings.append({"path": rel, "problem": "not a file, directory or symlink: skipped"})
            continue
        entries.append(entry)
        progress.add_file()
    entries.sort(key=lambda e: e["path"])
    return entries


def _unchanged(previous, st):
    return previous.get("type") == "file" and (
        previous.get("size"),
        previous.get("mtime_ns"),
        previous.get("ctime_ns"),
        previous.get("ino"),
    ) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def scan_totals(root):
    """Files and bytes a file-tree backup of an open root will read, for progress and ETA."""
    files = size = 0
    for _, _, _, st in scan_file_tree(root):
        if stat.S_ISREG(st.st_mode):
            files += 1
            size += st.st_size
    return files, size


def read_bucket(writer, bucket, prefix, progress, warnings):
    """Manifest entries of the objects of an OSS bucket under a prefix, with their content types.

    A key that is absolute or has an empty, `.` or `..` segment is skipped and reported.
    """
    entries = []
    for obj in bucket.list_objects(prefix):
        problem = key_problem(obj["key"])
        if problem:  # rule T1: such a key would lead out of the bucket or the restore target: never followed
            warnings.append({"path": obj["key"][:1024], "problem": f"the key {problem}: skipped"})
            continue
        try:
            with bucket.open(obj["key"]) as stream:
                chunks, size, digest = chunk_stream(writer, stream, progress.add_bytes)
        except FileNotFoundError:
            warnings.append({"path": obj["key"], "problem": "vanished before it could be read"})
            continue
        entries.append(
            {
                "path": obj["key"],
                "type": "object",
                "size": size,
                "chunks": chunks,
                "hash": digest,
                "content_type": obj.get("content_type")
                or mimetypes.guess_type(obj["key"])[0]
                or "application/octet-stream",
                "mtime_ns": obj.get("mtime_ns", 0),
            }
        )
        progress.add_file()
    return entries
