"""The token splitter's compiled kernel, built on first use with the node's C compiler.

:func:`kernel` returns the C function of ``squeeze.c`` loaded with ctypes, or
``None`` when it cannot be had; the token splitter then uses its pure-Python
kernel, which gives the same bytes more slowly (:mod:`job.tokens` says how
much). The source is plain C with no Python headers, so the library does not
depend on the Python version and any ``cc`` builds it in a fraction of a second.
The same library serves the rank's planning: :func:`examine` (a folder's files
examined in one call) and :func:`size_shards` (the ``size`` strategy's balance),
each with a Python twin in its caller that gives the same answer without it.

The library holds several paths that give the same bytes (:func:`paths`):
``avx2`` and ``sse2`` on x86-64, where the CPU runs them, and the portable
``scalar`` everywhere. It picks the fastest this CPU runs at run time, not at
compile time, so one library serves every node that shares a cache folder
(a home folder on NFS, say). ``AMLSHARD_NATIVE`` chooses:

- unset, ``1``, ``on``, ``true``, ``yes``: the fastest path;
- ``avx2``, ``sse2``, ``scalar``: that path (the fastest, and a warning, where
  this library or CPU lacks it);
- ``0``, ``off``, ``false``, ``no``: no compiled library: the pure-Python kernel,
  and the planning's Python twins.

The library is cached under ``$AMLSHARD_CACHE`` (default
``$XDG_CACHE_HOME/amlshard``, else ``~/.cache/amlshard``), named by a digest
of the source, the compiler command and the machine, and written under a
temporary name then renamed, so ranks that start together on one node may
build it at once. Beside it, ``NAME.sha256`` holds the SHA-256 of the library
as it was built (also written under a temporary name, after the library): a
library is loaded only when its bytes match it, since loading a truncated
library can kill the process with SIGBUS rather than fail. A library without
a matching checksum (truncated, corrupt, or cached by an older version), or
that cannot be loaded, or whose path to be used fails the self-test
(:data:`SELF_TEST_INPUT` must give :data:`SELF_TEST_OUTPUT`, whole and cut in
two anywhere) is compiled once more, replacing it.
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import hashlib
import logging
import os
import shlex
import threading
from array import array
from collections.abc import Callable, Sequence

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "squeeze.c")
FLAGS = ["-O2", "-std=c99", "-shared", "-fPIC"]
COMPILE_TIMEOUT = 120
#: :func:`examine` takes a second thread from this many names on (a thread costs ~0.1 ms).
EXAMINED_IN_TWO = 512

log = logging.getLogger("job")

#: ``(in, n, out, after_whitespace*, newlines*) -> bytes written``; see squeeze.c.
#: Its ``library`` attribute is the loaded library (:func:`paths`, :func:`select`).
Squeeze = Callable[..., int]

_OFF = ("0", "off", "false", "no")
_ON = ("", "1", "on", "true", "yes")

#: Every ASCII whitespace byte, alone and in runs, at both ends and between tokens
#: that hold bytes other splitters take for whitespace (0x1c-0x1f, 0x85, 0xa0), NUL,
#: 0xff; then runs of whitespace across the 8-, 16- and 32-byte blocks of the
#: compiled paths, blocks without a run, and blocks where one must be dropped.
SELF_TEST_INPUT = (b"\r\n a\x00b\t\tc\x1c\x1d\x1e\x1fd\ve\f\x85\xa0f \xff\x80\n\v\f\r\t "
                   b"tokens of prose, one space apart, \x89\x19\x29\x0e\x08\x20\x00\x8a\x8d "
                   b"x\t \n\r\x0b\x0c  y \n\n z" + b"w" * 29 + b"\n\n" + b"v" * 14 + b" \t")
#: Its output as ``job.tokens.split_bytes`` defines it (each token, then a newline).
SELF_TEST_OUTPUT = b"".join(token + b"\n" for token in SELF_TEST_INPUT.split())


class Unavailable(Exception):
    """Why the compiled kernel cannot be used; the message is one line."""


def _setting() -> str:
    return os.environ.get("AMLSHARD_NATIVE", "1").strip().lower()


def turned_off() -> bool:
    """Whether ``AMLSHARD_NATIVE`` asks for the pure-Python kernel."""
    return _setting() in _OFF


def requested_path() -> str | None:
    """The path ``AMLSHARD_NATIVE`` names (``avx2``...), or ``None`` for the fastest."""
    setting = _setting()
    return None if setting in _ON or setting in _OFF else setting


@functools.cache
def _decided() -> tuple[Squeeze | None, str | None]:
    """The compiled library's ``amlshard_squeeze``, or None and why not (None when
    ``AMLSHARD_NATIVE`` turned it off): decided once per process."""
    if turned_off():
        return None, None
    try:
        return _obtain(), None
    except Unavailable as reason:
        return None, str(reason)


@functools.cache
def kernel() -> Squeeze | None:
    """The compiled ``amlshard_squeeze``, or ``None`` (the reason is logged once)."""
    squeeze, reason = _decided()
    if squeeze is not None:
        log.debug("token kernel: compiled, path %s", selected(squeeze))
    elif reason is None:
        log.debug("token kernel: pure Python (AMLSHARD_NATIVE=0)")
    else:
        log.warning("token kernel: pure Python, slower than the compiled one: %s", reason)
    return squeeze


def library() -> Squeeze | None:
    """The compiled library for the rank's planning (:func:`examine`, :func:`size_shards`):
    :func:`kernel`'s, without a word when there is none (the callers then do the same
    work in Python; whatever the processor, that is no news for the user)."""
    return _decided()[0]


def examine(folder: int, names: Sequence[str], follow: bool = True
            ) -> tuple[array, array, array] | None:
    """``(kinds, sizes, mtimes_ns)`` of the entries ``names`` of the folder ``folder`` (a
    descriptor), examined by the compiled library (``amlshard_examine``): each kind is the
    entry's file type (``mode & S_IFMT``, as :func:`stat.S_IFMT` gives it), or ``-errno``
    where it could not be examined. None without the library: examine them one by one.

    ``os.stat`` of 20,000 files on tmpfs took 100 ms where one call takes 65 ms: most of
    ``os.stat``'s cost is building its result. From :data:`EXAMINED_IN_TWO` names on, and
    with a second CPU, a thread examines half of them meanwhile (ctypes lets go of the
    GIL during the call).
    """
    squeeze = library()
    if squeeze is None or not names or not 0 <= folder < 1 << 31:
        return None
    count = len(names)
    kinds = array("i", bytes(4 * count))
    sizes, mtimes = array("q", bytes(8 * count)), array("q", bytes(8 * count))
    addresses = (kinds.buffer_info()[0], sizes.buffer_info()[0], mtimes.buffer_info()[0])
    call = squeeze.library.amlshard_examine

    def part(start: int, end: int) -> tuple:
        packed = os.fsencode("\0".join(names[start:end])) + b"\0"
        return (folder, packed, end - start, int(follow), addresses[0] + 4 * start,
                addresses[1] + 8 * start, addresses[2] + 8 * start)

    half = count // 2 if count >= EXAMINED_IN_TWO and _second_cpu() else count
    parts = [part(0, half)] + ([part(half, count)] if half < count else [])
    if any(packed.count(b"\0") != size for _, packed, size, *_ in parts):
        return None  # a name holding a NUL: os.stat refuses it (ValueError), so do the callers
    helper = None
    if len(parts) > 1:
        helper = threading.Thread(target=call, args=parts[1], name="examine")
        try:
            helper.start()
        except RuntimeError:  # no thread to be had (memory, limits): one call does all
            helper, parts[0] = None, part(0, count)
    try:
        call(*parts[0])
    finally:
        if helper is not None:
            helper.join()
    return kinds, sizes, mtimes


def _second_cpu() -> bool:
    """Whether this process may run on more than one CPU (its affinity mask; a CPU quota
    does not matter here: a thread that waits on the file system takes little of it)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux, where the library examines
    return affinity is not None and len(affinity(0)) > 1


def size_shards(sizes: Sequence[int], count: int, index: int | None = None
                ) -> array | None:
    """The ``size`` strategy in C (``amlshard_size_shards``, what
    :func:`job.sharding.size_balanced` does in Python: a million sizes in 0.1 s, not
    1.5 s): the shard of each item, or with ``index`` the items shard ``index`` takes,
    ascending. None without the library, or for sizes or a count it does not take (not
    64-bit integers, a negative size, a sum past 64 bits, no shard): the caller then
    balances them in Python."""
    count = min(count, max(len(sizes), 1))  # shards past the items' count take nothing
    squeeze = library()
    if squeeze is None or not 0 < count < 1 << 31 or (index is not None and not 0 <= index):
        return None
    if index is not None and index >= count:
        return array("q")
    try:  # item by item: array("q", b"...") would read bytes as raw 64-bit words
        packed = sizes if isinstance(sizes, array) and sizes.typecode == "q" else array(
            "q", iter(sizes))
    except (OverflowError, TypeError):
        return None
    out = array("i" if index is None else "q", bytes((4 if index is None else 8) * len(packed)))
    address = out.buffer_info()[0]
    found = squeeze.library.amlshard_size_shards(
        packed.buffer_info()[0], len(packed), count, 0 if index is None else index,
        address if index is None else None, None if index is None else address)
    if found < 0:
        return None
    return out if index is None else out[:found]


def paths(squeeze: Squeeze) -> list[str]:
    """The paths of the loaded kernel ``squeeze`` that this CPU runs, fastest first."""
    return squeeze.library.amlshard_paths().decode("ascii").split()


def selected(squeeze: Squeeze) -> str:
    """The path ``squeeze`` uses now."""
    return squeeze.library.amlshard_selected().decode("ascii")


def select(squeeze: Squeeze, path: str | None) -> None:
    """Make ``squeeze`` use ``path`` (``None``: the fastest); :class:`ValueError` if it cannot.

    Affects every caller of the library in this process: not to be called
    while another thread splits. Only the path chosen when the library was
    loaded has passed the self-test (tests compare every path with
    ``bytes.split``).
    """
    name = None if path is None else path.encode("utf-8", "replace")
    if squeeze.library.amlshard_select(name) != 0:
        raise ValueError(f"no compiled path {path!r} on this CPU "
                         f"(it runs {', '.join(paths(squeeze))})")


def _obtain() -> Squeeze:
    """The cached kernel, or a freshly compiled one where there is none or it is unusable."""
    compiler = _compiler()
    target = _target(compiler)
    if os.path.exists(target):
        try:
            _check(target)
            return _load(target)
        except Unavailable as reason:
            log.info("token kernel: %s; compiling it again", reason)
    _compile(compiler, target)
    return _load(target)


def cache_dir() -> str:
    """Where compiled kernels are kept."""
    if os.environ.get("AMLSHARD_CACHE"):
        return os.environ["AMLSHARD_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "amlshard")


def build() -> str:
    """The path of the compiled kernel, compiling it first if it is not cached."""
    compiler = _compiler()
    target = _target(compiler)
    try:
        _check(target)
    except Unavailable:
        _compile(compiler, target)
    return target


def checksum_path(library: str | os.PathLike) -> str:
    """Where the SHA-256 of the cached ``library`` is kept: ``NAME.sha256`` beside it."""
    return os.fspath(library) + ".sha256"


def _sha256(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _check(library: str) -> None:
    """:class:`Unavailable` unless ``library``'s bytes match the checksum written beside it."""
    try:
        with open(checksum_path(library), encoding="ascii") as stream:
            expected = stream.read().strip()
    except (OSError, ValueError):
        raise Unavailable(f"{library!r} has no checksum beside it") from None
    try:
        actual = _sha256(library)
    except OSError as error:
        raise Unavailable(f"cannot read {library!r}: {error.strerror}") from None
    if actual != expected:
        raise Unavailable(f"{library!r} does not match its checksum (truncated or "
                          "corrupt)")


def _compiler() -> list[str]:
    """The compiler command, ``$CC`` or ``cc`` (whether it exists is checked when it is
    needed: a cached library is used without it)."""
    return shlex.split(os.environ.get("CC") or "cc")


def _target(compiler: list[str]) -> str:
    """Where the kernel built by ``compiler`` from the current source is cached."""
    try:
        with open(SOURCE, "rb") as stream:
            source = stream.read()
    except OSError as error:
        raise Unavailable(f"cannot read {SOURCE}: {error.strerror}") from None
    digest = hashlib.sha256(b"\0".join([source, " ".join(compiler + FLAGS).encode(),
                                        os.uname().machine.encode()])).hexdigest()[:16]
    return os.path.join(cache_dir(), f"squeeze-{digest}.so")


def _compile(compiler: list[str], target: str) -> None:
    """Compile the kernel to a temporary file, then rename it to ``target`` (replacing it)."""
    import shutil  # here, with subprocess and tempfile: only compiling needs them (8 ms)
    import subprocess
    import tempfile

    if not compiler or shutil.which(compiler[0]) is None:
        raise Unavailable(f"no C compiler {' '.join(compiler) or 'cc'!r} on PATH "
                          "(install gcc, or set CC)")
    try:
        folder, name = os.path.split(target)
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        os.close(handle)
    except OSError as error:
        raise Unavailable(f"cannot write the cache folder {os.path.dirname(target)!r}: "
                          f"{error.strerror} (set AMLSHARD_CACHE)") from None
    try:
        command = [*compiler, *FLAGS, "-o", temporary, SOURCE]
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=COMPILE_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Unavailable(f"{shlex.join(command)}: {error}") from None
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no message"])[0]
            raise Unavailable(f"{shlex.join(command)} failed (exit {done.returncode}): {first}")
        try:
            os.chmod(temporary, 0o755)
            digest = _sha256(temporary)
            os.replace(temporary, target)
            _write_checksum(target, digest)
        except OSError as error:
            raise Unavailable(f"cannot write {target!r}: {error.strerror} "
                              "(remove it, or set AMLSHARD_CACHE)") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    log.debug("token kernel: compiled %s", target)


def _write_checksum(library: str, digest: str) -> None:
    """Write ``digest`` to ``library``'s checksum file, under a temporary name then renamed."""
    import tempfile

    final = checksum_path(library)
    folder, name = os.path.split(final)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="ascii") as stream:
            stream.write(digest + "\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, final)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _load(path: str) -> Squeeze:
    """The kernel of the library ``path``, once it passed the self-test."""
    try:
        library = ctypes.CDLL(os.fspath(path))
    except OSError as error:
        raise Unavailable(f"cannot load {path!r}: {error}") from None
    try:
        function = library.amlshard_squeeze
        for name in ("amlshard_select", "amlshard_selected", "amlshard_paths",
                     "amlshard_split_small_file", "amlshard_examine", "amlshard_size_shards"):
            getattr(library, name)  # a library without them is not squeeze.c's
    except AttributeError as error:
        _unload(library)
        raise Unavailable(f"cannot load {path!r}: {error}") from None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                         ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t)]
    function.restype = ctypes.c_size_t
    library.amlshard_select.argtypes = [ctypes.c_char_p]
    library.amlshard_select.restype = ctypes.c_int
    library.amlshard_selected.argtypes = library.amlshard_paths.argtypes = []
    library.amlshard_selected.restype = library.amlshard_paths.restype = ctypes.c_char_p
    split_small_file = library.amlshard_split_small_file
    split_small_file.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    split_small_file.restype = ctypes.c_longlong
    function.split_small_file = split_small_file  # see job.tokens.TokenSplitter.process
    library.amlshard_examine.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                                         ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.c_void_p]
    library.amlshard_examine.restype = None
    library.amlshard_size_shards.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                                             ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
    library.amlshard_size_shards.restype = ctypes.c_longlong
    function.library = library
    try:
        select(function, requested_path())
    except ValueError as reason:
        select(function, None)
        log.warning("token kernel: AMLSHARD_NATIVE: %s; using %s", reason, selected(function))
    if not _passes_self_test(function):
        name = selected(function)  # not once the library is closed: a call would crash
        _unload(library)
        raise Unavailable(f"{path!r} fails its self-test: its tokens differ from "
                          f"bytes.split()'s (path {name})")
    return function


def _unload(library: ctypes.CDLL) -> None:
    """Close ``library``, so that loading its path again reads the file anew.

    The dynamic loader hands out a library already loaded under the same
    path without looking at the file, even when the file was replaced.
    """
    close = getattr(_ctypes, "dlclose", None)  # POSIX only
    if close is not None:
        close(library._handle)


def _passes_self_test(squeeze: Squeeze) -> bool:
    """Whether ``squeeze`` gives :data:`SELF_TEST_OUTPUT`, whole and cut in two anywhere."""
    data = SELF_TEST_INPUT
    out = ctypes.create_string_buffer(len(data))
    for cut in range(len(data) + 1):
        state, newlines, written = ctypes.c_int(1), ctypes.c_size_t(0), b""
        for piece in (data[:cut], data[cut:]):
            size = squeeze(piece, len(piece), out, ctypes.byref(state), ctypes.byref(newlines))
            written += out.raw[:size]
        if (written, newlines.value, state.value) != (SELF_TEST_OUTPUT, len(data.split()), 1):
            return False
    return True
