"""What a tenant names, opened without following links (rule T1).

Sources are read, and restores written, relative to directory descriptors opened with
O_NOFOLLOW: a link swapped in while a job runs is never followed, and what was opened
is checked (fstat, its path through /proc/self/fd), not the name it was asked by.
Keys and prefixes a tenant gives are checked here too. Nothing here knows of accounts.
"""

import errno
import os
import signal
import stat
import threading

# O_NONBLOCK: opening a FIFO swapped in for a file returns at once (it is then skipped).
NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW
KEY_MAX = 1024
NAME_MAX = 255


# How long one read of a tenant's file may take: a read that stalls where a signal interrupts it (a soft NFS
# mount, a network file system or FUSE daemon that stops answering) then ends the job naming the file.
READ_TIME_LIMIT = 60.0


class ReadTimedOut(OSError):
    def __init__(self, limit):
        super().__init__(errno.ETIMEDOUT, f"no answer from the file system for {limit:g} s")


class TimedReads:
    """A file opened for reading whose every `readinto` has READ_TIME_LIMIT, as a context manager.

    The limit is a timer signal (SIGALRM, which interrupts a blocked read), so it holds in a process's main
    thread, where jobs run; in another thread reads are not limited. A read the kernel lets only a fatal
    signal interrupt (a hard NFS mount) stays blocked: the job's heartbeat then stops, the job is failed by
    the reaper after 90 s and its attempt fenced off, so nothing it does later lands.
    """

    def __init__(self, file, limit=None):
        self.file = file
        self.limit = READ_TIME_LIMIT if limit is None else limit
        self.timed = threading.current_thread() is threading.main_thread()
        self.previous = None

    def __enter__(self):
        if self.timed:
            self.previous = signal.signal(signal.SIGALRM, self._expired)
        return self

    def __exit__(self, *exc):
        if self.timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            # None: a handler set outside Python, which cannot be put back; the default is what it stood for
            signal.signal(signal.SIGALRM, signal.SIG_DFL if self.previous is None else self.previous)

    def _expired(self, signum, frame):
        raise ReadTimedOut(self.limit)

    @property
    def name(self):
        return self.file.name

    def readinto(self, buffer):
        if not self.timed:
            return self.file.readinto(buffer)
        signal.setitimer(signal.ITIMER_REAL, self.limit)
        try:
            return self.file.readinto(buffer)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)


class UnsafePath(Exception):
    """A name that would lead outside what it was given for, or that changed into a link or a special file."""


class InTheWay(UnsafePath):
    """Something that is not a directory (a file, a link) stands where a path needs one."""

    def __init__(self, where, what):
        super().__init__(f"{where} is {what}")
        self.where, self.what = where, what


def key_problem(key, max_bytes=KEY_MAX):
    """Why a key or a relative path is unsafe (absolute, `..`, `.` or empty segments, NUL, too long), or None.

    `max_bytes` None: no limit on the whole (a path in a file tree), only on each name.
    """
    if not key:
        return "is empty"
    if "\x00" in key:
        return "contains a NUL byte"
    if key.startswith("/"):
        return "is absolute"
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' segment"
    if any(len(p.encode("utf-8", "surrogateescape")) > NAME_MAX for p in parts):
        return f"has a segment longer than {NAME_MAX} bytes"
    if max_bytes and len(key.encode("utf-8", "surrogateescape")) > max_bytes:
        return f"is longer than {max_bytes} bytes"
    return None


def clean_prefix(prefix):
    """A bucket prefix a tenant gives: '' or names separated by '/', with at most one '/' at the end.

    Raises ValueError with a message for the user (rule T1: no `..`, no absolute or empty segment).
    """
    prefix = (prefix or "").strip()
    if not prefix:
        return ""
    problem = key_problem(prefix[:-1] if prefix.endswith("/") else prefix)
    if problem:
        raise ValueError(f"The prefix {prefix!r} {problem}: give folder names separated by '/'.")
    return prefix


def prefix_refusal(prefix):
    """Why a stored prefix may not be used (one registered before the rule held), or None."""
    try:
        clean_prefix(prefix)
    except ValueError as exc:
        return str(exc)
    return None


def join_key(prefix, path):
    """The key of `path` under `prefix`; raises UnsafePath if either would lead elsewhere."""
    problem = key_problem(path)
    if problem:
        raise UnsafePath(f"{path!r} {problem}")
    try:
        prefix = clean_prefix(prefix)
    except ValueError as exc:
        raise UnsafePath(str(exc)) from None
    return f"{prefix.rstrip('/')}/{path}" if prefix else path


def opened_path(fd):
    """Where an open descriptor really is (what was opened, not the name it was opened by)."""
    return os.readlink(f"/proc/self/fd/{fd}")


class OpenRoot:
    """A source or target root, opened once without following a link at its end.

    `check(real_path)` returns why the opened root may not be used, or None; it is asked
    about the path of what was opened. `fd` reads the root: a directory, or for a
    single-file source, the file itself.
    """

    def __init__(self, path, check=None, want_dir=False):
        self.path = path
        try:
            handle = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise UnsafePath(_describe_error(path, exc)) from None
        try:
            st = os.fstat(handle)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePath(f"The path {path} is a symbolic link; give the directory it leads to.")
            if want_dir and not stat.S_ISDIR(st.st_mode):
                raise UnsafePath(f"The path {path} is not a directory.")
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise UnsafePath(f"The path {path} is neither a directory nor a regular file.")
            try:
                self.real_path = opened_path(handle)
            except OSError as exc:  # e.g. a real path longer than PATH_MAX, reached through links on the way
                raise UnsafePath(f"The path {path} cannot be resolved: {exc.strerror}.") from None
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                parent = os.stat(os.path.dirname(self.real_path))
                if parent.st_uid != st.st_uid:
                    raise UnsafePath(f"The path {path} is a hard link to a file of another owner.")
            reason = check(self.real_path) if check else None
            if reason:
                raise UnsafePath(reason)
            self.is_dir = stat.S_ISDIR(st.st_mode)
            # /proc/self/fd/N leads to exactly what the handle holds (it is a link only by name)
            flags = (DIRECTORY if self.is_dir else os.O_RDONLY | NOFOLLOW) & ~os.O_NOFOLLOW
            try:
                self.fd = os.open(f"/proc/self/fd/{handle}", flags)
            except OSError as exc:
                raise UnsafePath(_describe_error(path, exc)) from None
        finally:
            os.close(handle)
        opened = os.fstat(self.fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):  # cannot happen through /proc; be sure
            os.close(self.fd)
            raise UnsafePath(f"The path {path} changed while it was being opened.")
        self.stat = opened
        self.name = os.path.basename(self.real_path.rstrip("/")) or "/"

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _describe_error(path, exc):
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"The path {path} does not exist."
    if exc.errno == errno.ELOOP:
        return f"The path {path} is a symbolic link or leads through a loop of them."
    if exc.errno == errno.EACCES:
        return f"The path {path} cannot be read (permission denied)."
    return f"The path {path} cannot be opened: {exc.strerror}."


MAX_DEPTH = 512


def walk(root_fd, on_problem):
    """Every entry under an open directory, depth first in name order: (rel, parent fd, name, lstat).

    A directory is entered only through a descriptor opened relative to its parent with
    O_NOFOLLOW and checked to be the directory that was listed; the parent's descriptor
    stays open while its entries are handed out, so the caller opens them relative to it.
    `on_problem(rel, text)` hears of what is skipped. No recursion: a tree nested deeper
    than MAX_DEPTH is cut there (and reported), which also bounds the descriptors held.
    """
    stack = [(root_fd, "", iter(_entries(root_fd, "", on_problem)))]
    try:
        while stack:
            dir_fd, rel, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                if dir_fd != root_fd:
                    os.close(dir_fd)
                continue
            name, st = child
            child_rel = f"{rel}/{name}" if rel else name
            yield child_rel, dir_fd, name, st
            if not stat.S_ISDIR(st.st_mode):
                continue
            if len(stack) > MAX_DEPTH:
                on_problem(child_rel, f"is nested deeper than {MAX_DEPTH} directories: its content is skipped")
                continue
            child_fd = _enter(dir_fd, name, st, child_rel, on_problem)
            if child_fd is not None:
                stack.append((child_fd, child_rel, iter(_entries(child_fd, child_rel, on_problem))))
    finally:
        for dir_fd, _, _ in stack:
            if dir_fd != root_fd:
                os.close(dir_fd)


def _entries(dir_fd, rel, on_problem):
    """(name, lstat) of a directory's entries in name order; an entry gone since the listing is left out."""
    found = []
    try:
        with os.scandir(dir_fd) as it:
            for entry in it:
                try:
                    found.append((entry.name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    on_problem(
                        f"{rel}/{entry.name}" if rel else entry.name, f"cannot be examined ({exc.strerror}): skipped"
                    )
    except OSError as exc:
        on_problem(rel or ".", f"cannot be listed ({exc.strerror}): skipped")
    found.sort()
    return found


def _enter(dir_fd, name, st, rel, on_problem):
    try:
        child_fd = os.open(name, DIRECTORY, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            on_problem(rel, "became a link or a file while it was read: skipped")
        elif exc.errno != errno.ENOENT:
            on_problem(rel, f"cannot be opened ({exc.strerror}): skipped")
        return None
    opened = os.fstat(child_fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
        os.close(child_fd)
        on_problem(rel, "was replaced while it was read: skipped")
        return None
    return child_fd


def open_regular(dir_fd, name):
    """Open an entry for reading only if it is, once open, a regular file: (fd, fstat).

    Raises UnsafePath naming what it found instead (a link is never followed, a FIFO never blocks).
    """
    try:
        fd = os.open(name, os.O_RDONLY | NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath("is a symbolic link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePath(f"is not a regular file ({kind_of(st.st_mode)})")
    return fd, st


def kind_of(mode):
    for test, name in (
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "of an unknown kind"


def lookup(dir_fd, name):
    """The lstat of an entry, or None if there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_parent(root_fd, parts, *, create, mode=0o755):
    """A descriptor of the directory holding `parts[-1]`, walking from root_fd without following links.

    With `create`, missing directories are made. Raises UnsafePath naming the first part
    that is a link or not a directory, FileNotFoundError if one is missing and not created.
    The caller closes the descriptor (it may be root_fd's duplicate).
    """
    fd = os.dup(root_fd)
    try:
        for depth, part in enumerate(parts[:-1]):
            try:
                child = os.open(part, DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(part, DIRECTORY, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    st = lookup(fd, part)
                    what = kind_of(st.st_mode) if st else "something that is not a directory"
                    raise InTheWay("/".join(parts[: depth + 1]), what) from None
                raise
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise
