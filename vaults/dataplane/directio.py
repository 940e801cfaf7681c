"""Writing large new files around the page cache (O_DIRECT).

Packs and restored files are written once and rarely read again soon; on the machines
measured, filling the page cache with them cost several times the disk's own write time.
O_DIRECT needs block-aligned memory, offsets and lengths, so the bytes go through a
page-aligned staging buffer per thread, and a file's last partial block is written the
usual way. A filesystem that refuses O_DIRECT gets every byte the usual way.
"""

import errno
import mmap
import os
import threading

DIRECT_MIN = 1 << 20  # smaller files (manifests, markers, small restored files) use the page cache
BLOCK = 4096
STAGING = 4 << 20
_local = threading.local()


def write_all(fd, view, offset=None):
    """Write every byte of `view` to `fd` (at `offset`, if given)."""
    view = memoryview(view)
    while view:
        written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[written:]
        if offset is not None:
            offset += written


class DirectWriter:
    """Appends to a new, empty file: whole blocks with O_DIRECT, the last partial block through `fd`.

    `fd` is the file's ordinary descriptor; the caller fsyncs and closes it after `finish()`.
    `path` None: the file is opened again through its descriptor.
    """

    def __init__(self, path, fd):
        self.fd = fd
        self.fill = 0  # bytes waiting in the staging buffer
        self.offset = 0  # bytes already in the file
        self.direct = None
        flag = getattr(os, "O_DIRECT", 0)
        if flag:
            try:
                # the file itself, again (by its descriptor: a name could have been swapped for a link)
                self.direct = os.open(f"/proc/self/fd/{fd}" if path is None else path, os.O_WRONLY | flag)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
        if self.direct is not None:
            self.staging = getattr(_local, "staging", None)
            if self.staging is None:
                self.staging = _local.staging = mmap.mmap(-1, STAGING)  # page-aligned

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.direct is not None:
            os.close(self.direct)
            self.direct = None

    def write(self, data):
        view = memoryview(data)
        if self.direct is None:
            write_all(self.fd, view, self.offset)
            self.offset += len(view)
            return
        while view:
            n = min(len(view), STAGING - self.fill)
            self.staging[self.fill : self.fill + n] = view[:n]
            self.fill += n
            view = view[n:]
            if self.fill == STAGING:
                self._flush(STAGING)
                if self.direct is None:  # refused after all: the rest the usual way
                    self.write(view)
                    return

    def finish(self):
        """Write what is still staged: its whole blocks directly, then the tail through `fd`."""
        if self.direct is None:
            return
        aligned = self.fill - self.fill % BLOCK
        if aligned:
            self._flush(aligned)
        if self.fill:  # the last partial block (or everything, if the filesystem refused the direct write)
            write_all(self.fd, memoryview(self.staging)[: self.fill], self.offset)
            self.offset += self.fill
            self.fill = 0

    def _flush(self, n):
        """Write the first `n` staged bytes (whole blocks) at the end of the file."""
        view = memoryview(self.staging)
        try:
            written = os.pwrite(self.direct, view[:n], self.offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL or self.offset:
                raise
            os.close(self.direct)  # the filesystem accepted the flag but not the write: plain writes from here
            self.direct = None
            write_all(self.fd, view[: self.fill], 0)
            self.offset, self.fill = self.fill, 0
            return
        if written != n:
            raise OSError(errno.EIO, f"short direct write ({written} of {n} bytes)")
        self.offset += n
        rest = self.fill - n
        if rest:
            self.staging[:rest] = self.staging[n : self.fill]
        self.fill = rest
