"""Opening the files a user names: one way, for every option that reads one.

Vocabularies, metadata, list files, queries, A/B units and events, benchmark figures and weights
all come through here, so each of them refuses the same things the same way: anything but a
regular file (a named pipe, a device such as /dev/zero, a folder, a socket, a broken symbolic
link) is one clear error that says what the path is, and never a hang -- the file is opened with
O_NONBLOCK and checked with fstat on the open descriptor, so a pipe never blocks and a file
swapped for one meanwhile is caught too. Content read whole is capped per kind of file (see
LIMITS_MB; VREC_MAX_FILE_MB replaces every cap), so a huge file is refused before it is read
rather than filling the memory.

This module depends on nothing of vrec's but its errors, so any module may import it.
"""
from __future__ import annotations

import errno
import io
import os
import stat
from typing import BinaryIO

from vrec.base.errors import VrecError, check_number

MB = 1 << 20
# The most a file of each kind may hold, where vrec reads it whole (pandas then needs a few
# times this much memory). Weights are not capped: they are read tensor by tensor.
LIMITS_MB = {
    "vocabulary": 8,
    "queries": 64,
    "benchmarks": 16,
    "metadata": 512,
    "list": 512,
    "feed": 512,  # product feeds; a gzip-compressed one is capped again once decompressed
    "table": 1024,  # A/B units and events
}
LIMIT_ENV = "VREC_MAX_FILE_MB"


def limit_mb(kind: str) -> float:
    """The size cap in MB for a kind of file: VREC_MAX_FILE_MB when set, else LIMITS_MB[kind]."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if raw:
        check_number(LIMIT_ENV, raw, min=0.001, max=1e9, hint="megabytes, e.g. 2000")
        return float(raw)
    return float(LIMITS_MB[kind])


def kind_of(mode: int) -> str:
    """What a non-regular file is, as the end of 'PATH is ...'."""
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def describe(path: str | os.PathLike) -> str | None:
    """What stands at ``path`` when it is not a regular file ('is a named pipe', 'does not exist',
    'is a broken symbolic link', ...), or None for a regular file (symbolic links followed)."""
    try:
        st = os.stat(path)
    except OSError as e:
        return _missing(path, e)
    return None if stat.S_ISREG(st.st_mode) else "is " + kind_of(st.st_mode)


def _missing(path, e: OSError) -> str:
    """Why ``os.stat``/``os.open`` of a path failed, as the end of 'PATH ...'."""
    if e.errno == errno.ELOOP:
        return "is a symbolic link that points to itself (a loop)"
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return "is a broken symbolic link (its target does not exist)" if os.path.islink(path) else "does not exist"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    if e.errno == errno.ENXIO:  # a socket, or a device with no driver
        try:
            return "is " + kind_of(os.stat(path).st_mode)
        except OSError:
            pass
    return f"cannot be opened ({e.strerror or e})"


def _refuse(path, what: str, why: str, want: str, error: type[VrecError]) -> VrecError:
    return error(f"{what} {str(path)!r} {why}; {want}.")


def open_file(path: str | os.PathLike, what: str, want: str = "give a regular file",
              error: type[VrecError] = VrecError) -> BinaryIO:
    """Open a user-named file for reading in binary, refusing anything but a regular file.

    ``what`` names the file in the error ('--metadata', 'Vocabulary'); ``want`` says what to do
    instead ('give the CSV file of product data'); ``error`` is the VrecError class raised.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _refuse(path, what, _missing(path, e), want, error) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, what, "is " + kind_of(st.st_mode), want, error)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_file(path: str | os.PathLike, what: str, want: str = "give a regular file",
               error: type[VrecError] = VrecError) -> int:
    """Refuse anything but a readable regular file, as :func:`open_file` does; returns its size.

    For readers that need a path rather than bytes (safetensors, torch.load): they then open a
    file that was a regular file a moment ago."""
    with open_file(path, what, want, error) as f:
        return os.fstat(f.fileno()).st_size


def read_bytes(path: str | os.PathLike, what: str, kind: str, want: str = "give a regular file",
               error: type[VrecError] = VrecError) -> bytes:
    """The whole content of a user-named regular file, at most ``limit_mb(kind)`` megabytes."""
    cap = limit_mb(kind)
    limit = int(cap * MB)
    with open_file(path, what, want, error) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            data = f.read(limit + 1) if size <= limit else b""
        except OSError as e:
            raise _refuse(path, what, f"cannot be read ({e.strerror or e})", want, error) from None
    if size > limit or len(data) > limit:
        size = max(size, len(data))
        raise error(f"{what} {str(path)!r} is {size / MB:,.0f} MB, more than the {cap:g} MB a {kind} file may hold; "
                    f"give a smaller file, or raise the limit with {LIMIT_ENV}={_round_up_mb(size)}.")
    return data


def _round_up_mb(size: int) -> int:
    mb = size / MB
    step = 10 ** max(len(str(int(mb))) - 1, 0)
    return int(-(-mb // step) * step)


def read_text(path: str | os.PathLike, what: str, kind: str, want: str = "give a regular file",
              error: type[VrecError] = VrecError) -> str:
    """The content of a user-named text file, decoded as UTF-8 (a byte-order mark is dropped)."""
    data = read_bytes(path, what, kind, want, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{what} {str(path)!r} is not UTF-8 text; save it as UTF-8.") from None


def buffer(path: str | os.PathLike, what: str, kind: str, want: str = "give a regular file",
           error: type[VrecError] = VrecError) -> io.BytesIO:
    """The file's content as an in-memory file, for readers such as pandas that take one."""
    return io.BytesIO(read_bytes(path, what, kind, want, error))


# --- writing ----------------------------------------------------------------------------------

FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# what to do about an OSError met while writing a file or the output (others are bugs: traceback)
WRITE_ERRORS = {
    **{code: "free some space (or choose another location) and run the command again" for code in FULL},
    errno.EFBIG: "the file would be larger than this system allows: choose another location or lift the file "
                 "size limit (ulimit -f)",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "choose a writable location or check its permissions",
    errno.EPERM: "choose a writable location or check its permissions",
    errno.EIO: "check the disk (or network file system) and run the command again",
}


def write_error(e: OSError, target: str | os.PathLike | None = None, writing: bool = True) -> str | None:
    """One sentence for an OSError met while writing ``target`` (default: the file the error names,
    else 'the output'), or None for an error that is not about the place written to.

    Without ``writing`` (the CLI's catch-all, which cannot tell), a denied permission or an I/O
    error on a named file says 'Cannot use' rather than 'Cannot write'. numpy's ``tofile``
    reports a short write as 'N requested and M written' with no errno: on a full disk that is
    what a store shard gets, so it counts as a full disk."""
    code, reason = e.errno, e.strerror or str(e)
    if code is None and "written" in str(e):
        code, reason = errno.ENOSPC, f"{e}: the disk is probably full"
    if code not in WRITE_ERRORS:
        return None
    where = target if target is not None else e.filename
    what = f"{str(where)!r}" if where is not None else "the output"
    verb = "write" if writing or where is None or code in FULL | {errno.EFBIG, errno.EROFS} else "use"
    return f"Cannot {verb} {what} ({reason}); {WRITE_ERRORS[code]}."
