"""Reading backup data back: manifests, chunks, whole files; and verification of a vault.

Every read checks the AEAD tag and the chunk id (`ChunkCodec.open_chunk`), so
what comes back is what was stored, or an error that names what is wrong.
"""

import json

import blake3

from ..models import BackupPoint, Chunk, Pack
from .chunkstore import ChunkCodec, CorruptData
from .keys import vault_keys
from .objectstore import ObjectMissing, ObjectStoreError, region_store


class PointReader:
    """Reads one point's manifest and files; chunk locations come from the chunk index."""

    def __init__(self, point):
        self.point = point
        self.vault = point.vault
        self.store = region_store(self.vault.region)
        self.codec = ChunkCodec(vault_keys(self.vault))
        self._locations = None
        self._window = None
        self._sizes = None

    def manifest(self):
        blob = self.store.get(self.point.manifest_key)
        return json.loads(self.codec.open_manifest(self.point.id, blob))

    def locations(self):
        if self._locations is None:
            rows = Chunk.objects.filter(pointchunk__point=self.point).values_list(
                "chunk_id", "pack__key", "offset", "length", "raw_length"
            )
            self._locations = {bytes(cid).hex(): (key, off, n, raw) for cid, key, off, n, raw in rows}
        return self._locations

    def read_chunk(self, chunk_hex):
        location = self.locations().get(chunk_hex)
        if location is None:
            raise CorruptData(f"chunk {chunk_hex[:16]} is missing from the chunk index")
        key, offset, length, raw_length = location
        return self.codec.open_chunk(bytes.fromhex(chunk_hex), self._blob(key, offset, length), raw_length)

    WINDOW = 8 * 1024 * 1024

    def _blob(self, key, offset, length):
        """A chunk's stored bytes; a pack gone or cut short is damage (CorruptData), as a flipped bit is."""
        try:
            return self._window_of(key, offset, length)
        except ObjectMissing:
            pass  # a pack cut short may still hold this chunk: read just it
        try:
            return self.store.get_range(key, offset, length)
        except ObjectMissing as exc:
            raise CorruptData(f"a pack is missing or cut short: {exc}") from exc

    def _window_of(self, key, offset, length):
        """Reads a window of the pack, since a file's chunks usually follow each other."""
        cached = self._window
        if cached and cached[0] == key and cached[1] <= offset and offset + length <= cached[1] + len(cached[2]):
            start = offset - cached[1]
            return cached[2][start : start + length]
        if length >= self.WINDOW:
            return self.store.get_range(key, offset, length)
        size = self._pack_sizes().get(key)
        span = min(self.WINDOW, size - offset) if size else length
        data = self.store.get_range(key, offset, max(span, length))
        self._window = (key, offset, data)
        return data[:length]

    def _pack_sizes(self):
        if self._sizes is None:
            self._sizes = dict(Pack.objects.filter(vault=self.vault).values_list("key", "size"))
        return self._sizes

    def iter_file(self, entry):
        """The plaintext of a file entry, chunk by chunk."""
        for chunk_hex, _ in entry.get("chunks", []):
            yield self.read_chunk(chunk_hex)


def verify_vault(vault, on_progress=None):
    """Read back every chunk of every point: a report of missing or corrupt data by point and file.

    `on_progress(report)` is called after each chunk and each file with the report so far.
    """
    points = list(BackupPoint.objects.filter(vault=vault).select_related("vault__region", "vault__kms_key"))
    report = {
        "vault": vault.id,
        "points": 0,
        "points_total": len(points),
        "files": 0,
        "chunks": 0,
        "bytes": 0,
        "bytes_total": sum(p.size for p in points),
        "problems": [],
    }
    progress = on_progress or (lambda report: None)
    for point in points:
        report["points"] += 1
        reader = PointReader(point)
        try:
            manifest = reader.manifest()
        except (ObjectStoreError, CorruptData) as exc:
            report["problems"].append({"point": point.id, "path": None, "problem": f"manifest: {exc}"})
            continue
        for entry in manifest["entries"]:
            if entry["type"] not in ("file", "object"):
                continue
            report["files"] += 1
            hasher = blake3.blake3()
            try:
                for data in reader.iter_file(entry):
                    hasher.update(data)
                    report["chunks"] += 1
                    report["bytes"] += len(data)
                    progress(report)
            except (ObjectStoreError, CorruptData) as exc:
                report["problems"].append({"point": point.id, "path": entry["path"], "problem": str(exc)})
            else:
                if hasher.hexdigest() != entry["hash"]:
                    report["problems"].append(
                        {"point": point.id, "path": entry["path"], "problem": "content hash mismatch"}
                    )
            progress(report)
    return report
