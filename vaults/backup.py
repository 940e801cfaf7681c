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

from .chunkstore import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, PACK_TARGET, new_pack_name, pack_key
from .models import Chunk, Pack

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


def scan_file_tree(root):
    """Every entry under root (or root itself, if it is a file), sorted; with its lstat."""
    try:
        top = os.lstat(root)
    except (FileNotFoundError, NotADirectoryError):
        raise SourceError(f"The path {root} does not exist.") from None
    except OSError as exc:
        raise SourceError(f"The path {root} cannot be read: {exc.strerror}.") from None
    if stat.S_ISREG(top.st_mode):
        return [(os.path.basename(root), root, top)]
    if not stat.S_ISDIR(top.st_mode):
        raise SourceError(f"The path {root} is neither a directory nor a regular file.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise SourceError(f"The directory {root} cannot be read (permission denied).")
    entries = []
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        try:
            with os.scandir(full) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise SourceError(f"Cannot list {full}: {exc.strerror}") from exc
        for child in children:
            child_rel = f"{rel}/{child.name}" if rel else child.name
            st = child.stat(follow_symlinks=False)
            entries.append((child_rel, child.path, st))
            if stat.S_ISDIR(st.st_mode):
                stack.append(child_rel)
    entries.sort(key=lambda e: e[0])
    return entries


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
    """Manifest entries of a directory tree (or one file): files, dirs, symlinks, modes, mtimes.

    `parent` maps paths to the entries of the source's previous point: a file whose
    size, mtime, ctime and inode are unchanged reuses its chunk list unread.
    """
    parent = parent or {}
    entries = []
    for rel, full, st in scan_file_tree(root):
        entry = {"path": rel, "mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}
        if stat.S_ISDIR(st.st_mode):
            entry["type"] = "dir"
        elif stat.S_ISLNK(st.st_mode):
            entry["type"] = "symlink"
            entry["target"] = os.readlink(full)
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
                with open(full, "rb", buffering=0) as f:
                    chunks, size, digest = chunk_stream(writer, f, progress.add_bytes)
                    after = os.fstat(f.fileno())
            except FileNotFoundError:
                warnings.append({"path": rel, "problem": "vanished before it could be read"})
                continue
            except PermissionError:
                warnings.append({"path": rel, "problem": "cannot be read (permission denied)"})
                continue
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns) or size != after.st_size:
                warnings.append({"path": rel, "problem": "changed while it was being read"})
            entry.update(
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
    return entries


def _unchanged(previous, st):
    return previous.get("type") == "file" and (
        previous.get("size"),
        previous.get("mtime_ns"),
        previous.get("ctime_ns"),
        previous.get("ino"),
    ) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def scan_totals(root):
    """Files and bytes a file-tree backup will read, for progress and ETA."""
    files = size = 0
    for _, _, st in scan_file_tree(root):
        if stat.S_ISREG(st.st_mode):
            files += 1
            size += st.st_size
    return files, size


def read_bucket(writer, bucket, prefix, progress, warnings):
    """Manifest entries of the objects of an OSS bucket under a prefix, with their content types."""
    entries = []
    for obj in bucket.list_objects(prefix):
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
