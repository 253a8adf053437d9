"""Atomic file and folder writes: a crash leaves the old file or none, never a half-written one that looks valid.

Temporary names are ``.<name>.xlmr-tmp-<pid>-<random>`` (files) and ``.<name>.xlmr-partial-<pid>-<random>``
(folders), beside the target. A run that is killed (SIGKILL, power cut) cannot clean up after itself, so every
later write to the same target removes those leftovers whose process is gone: names that say whose they are let
a run tell its own stale files from a concurrent run's live ones, and never touch anything else.

A folder is published with ``renameat2(RENAME_NOREPLACE)`` (Linux) so that a target created by someone else while
the folder was being written is never replaced, and replaced (``overwrite``) with ``RENAME_EXCHANGE``, so that the
target path always holds one complete folder. Where the kernel or file system lacks them, an ``O_EXCL`` lock file
beside the target serialises xlmr's own writers and the check-then-rename runs under it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import time
from typing import Callable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------------------ temporary names
def _temporary_name(path: str, kind: str) -> str:
    return os.path.join(os.path.dirname(path),
                        f".{os.path.basename(path)}.xlmr-{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files and folders that killed xlmr runs writing ``path`` left beside it; return them.

    Only names of the form ``.<basename>.xlmr-(tmp|partial)-<pid>-<hex>`` whose ``pid`` is no longer running.
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.dirname(path), os.path.basename(path)
    pattern = re.compile(rf"\.{re.escape(base)}\.xlmr-(tmp|partial)-(\d+)-[0-9a-f]+")
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if not match or _alive(int(match.group(2))):
            continue
        stale = os.path.join(parent, name)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)
        removed.append(stale)
    return removed


# ------------------------------------------------------------------------------------------------ files
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_stale(path)
    tmp = _temporary_name(path, "tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the modes open() would give
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------------------ folders
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _renameat2(src: str, dst: str, flags: int) -> bool:
    """rename with ``flags``; False when the platform or file system cannot (then the caller falls back)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28 (macOS, musl, Windows)
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if function(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # the kernel or the file system lacks the flag
        return False
    raise OSError(code, os.strerror(code), dst)


@contextlib.contextmanager
def _publish_lock(path: str, shown: str, timeout: float = 30.0) -> Iterator[None]:
    """The fallback where renameat2 is missing: an O_EXCL lock file held while checking and renaming."""
    lock = f"{path}.xlmr-lock"
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise FileExistsError(f"{shown} is being published by another process (lock {lock}); if none is "
                                      "running, remove the lock") from None
            time.sleep(0.05)
    try:
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
        os.remove(lock)


def _publish_new(tmp: str, path: str, shown: str) -> None:
    """Rename ``tmp`` onto ``path`` only if nothing is there, or raise FileExistsError leaving ``path`` as it is."""
    exists = FileExistsError(f"{shown} appeared while it was being written; it was left as it is, "
                             "nothing was replaced (pass --force / overwrite=True to replace it)")
    try:
        if _renameat2(tmp, path, _RENAME_NOREPLACE):
            return
    except FileExistsError:
        raise exists from None
    # os.rename would silently replace an empty folder, or a file on POSIX: check under the lock instead.
    with _publish_lock(path, shown):
        if os.path.lexists(path):
            raise exists
        os.rename(tmp, path)


def _publish_over(tmp: str, path: str, shown: str) -> None:
    """Put ``tmp`` at ``path`` and the previous ``path`` at ``tmp`` (which the caller then removes)."""
    if not os.path.lexists(path):
        _publish_new(tmp, path, shown)
        return
    if _renameat2(tmp, path, _RENAME_EXCHANGE):
        return
    aside = tmp + "-old"  # matches no stale pattern: if killed right here, the user's folder is kept there
    with _publish_lock(path, shown):
        os.rename(path, aside)
        os.rename(tmp, path)
        os.rename(aside, tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False,
                     replaceable: Callable[[str], bool] | None = None) -> Iterator[str]:
    """Yield a temporary folder beside ``path``; on success it is published at ``path`` in one rename.

    ``path`` existing (at the start or at publish time) raises FileExistsError unless ``overwrite``; it is never
    replaced otherwise, even when someone creates it while the folder is being written. With ``overwrite``,
    ``path`` must be a folder (not a file or a link) and, when ``replaceable`` is given, every entry in it must
    satisfy ``replaceable(name)``: anything else raises FileExistsError naming the entries, and nothing is
    touched. The new folder and the old one are exchanged atomically; the old one is then removed. A failure at
    any point removes the temporary folder and leaves ``path`` as it was. Stale temporary folders of killed runs
    for the same ``path`` are removed first.

    Example:
        >>> import os, tempfile
        >>> target = os.path.join(tempfile.mkdtemp(), "out")
        >>> with atomic_directory(target) as tmp:
        ...     open(os.path.join(tmp, "config.json"), "w").close()
        >>> os.listdir(target)
        ['config.json']
    """
    shown = os.fspath(path)  # messages name the path as the caller gave it
    path = os.path.abspath(shown)
    check_replaceable(path, overwrite, replaceable, shown)
    created = []  # the parent folders this call makes, removed again (when still empty) if it fails
    parent = os.path.dirname(path)
    while not os.path.isdir(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_stale(path)
    tmp = _temporary_name(path, "partial")
    os.mkdir(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if overwrite:
            check_replaceable(path, overwrite, replaceable, shown)  # again: it may have changed meanwhile
            _publish_over(tmp, path, shown)
        else:
            _publish_new(tmp, path, shown)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the unfinished folder, or after an exchange the previous one


def check_replaceable(path: str, overwrite: bool, replaceable: Callable[[str], bool] | None,
                      shown: str | None = None) -> None:
    """Raise FileExistsError unless ``path`` is absent, or ``overwrite`` and it is a folder ``replaceable`` allows.

    Messages name ``shown`` (the path as the user gave it), or ``path``.
    """
    shown = path if shown is None else shown
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(f"{shown} already exists; pass --force / overwrite=True to replace it")
    if os.path.islink(path) or not os.path.isdir(path):
        what = "a symbolic link" if os.path.islink(path) else "not a folder"
        raise FileExistsError(f"{shown} is {what}; only a folder is replaced, even with --force / "
                              "overwrite=True")
    if replaceable is not None:
        others = sorted(name for name in os.listdir(path) if not replaceable(name)
                        or os.path.isdir(os.path.join(path, name)))
        if others:
            listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise FileExistsError(f"{shown} holds {listed}, which --force would delete: it replaces "
                                  "only a folder of checkpoint, config and tokenizer files; move them "
                                  "away or choose another destination")
