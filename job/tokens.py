"""The shipped processor: a whitespace token splitter, one token per output line.

A token is a maximal run of bytes that are not ASCII whitespace (space, tab,
newline, vertical tab, form feed, carriage return): exactly ``bytes.split()``.
Any bytes pass through. The output of a file is, byte for byte::

    b"".join(token + b"\\n" for token in data.split())

Files are streamed in chunks, so memory stays flat however large the file or
its tokens are, and a large file can be cut into byte ranges that several
workers split at once: the output of a range depends only on its bytes and on
whether the byte before it is whitespace, so the ranges' outputs concatenated
in order are the file's output. Copy this class as the model for your own
processor.

Two kernels do the per-byte work and give the same bytes. The compiled one
(``squeeze.c``, built on first use by :mod:`job.native`) squeezes 32 bytes at a
time with AVX2, 16 with SSE2 or 8 in a 64-bit word elsewhere: alone, on text in
memory, about 8, 4 and 2.5 GB/s on the 2-core development machine, against
3 GB/s for copying the same bytes from one file to another. A file is read
into one reused buffer and squeezed into another, which is written as is
(``readinto`` and ``write`` of 128 KiB, as ``dd bs=128K`` copies): two workers
split 303 MB in 103-108 ms where ``dd`` copies them in 90 ms. On 300 MB the job
takes 0.25-0.4× the time of ``tr -s`` and 1.9-2.4× that of ``dd`` (benchmark rows
1, 2, 8 and 9), most of the difference with ``dd`` being the job's fixed cost,
0.07-0.08 s before any byte (interpreter and imports). Where no C compiler is found,
:func:`squeeze` works on each chunk as one big integer, at about 0.6× the
speed of ``tr``.

A file of up to :data:`WHOLE_FILE_BYTES` (64 KiB) is read whole instead, and its
output written in one piece: on tiny files the file objects and the chunk loop cost
more than the bytes (benchmark row 10). The compiled kernel does such a file in one
call, system calls included (``amlshard_split_small_file``); without it,
:func:`job.atomic.write_bytes` writes the output.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import io
import os
import threading
from collections.abc import Callable

from . import native
from .atomic import BinaryFile, atomic_output, unnamed_files_fd, write_bytes
from .listing import require_regular
from .processor import DataProcessor

CHUNK_SIZE = 1 << 17  # dd's bs=128K; 256 KiB and 1 MiB were no faster (CPU time within 5%)
#: Files up to this size are read whole and their output written in one piece: for
#: small files the file objects and the chunk loop cost more than the bytes (row 10).
WHOLE_FILE_BYTES = 1 << 16
#: Up to this size ``bytes.split`` and a ``join`` cost less than a call of the kernel
#: through :func:`split_stream` (150 B: 2.1 µs against 3.1 µs; 512 B: 3.8 µs against 2.8 µs).
PYTHON_SPLIT_BYTES = 1 << 8
SMALL_CHUNK = 1 << 14
WHITESPACE = b" \t\n\v\f\r"
NEWLINE = b"\n"
_TO_NEWLINE = bytes.maketrans(WHITESPACE, NEWLINE * len(WHITESPACE))
_DELETE = b"\v"  # never left by _TO_NEWLINE: marks the newlines to drop


@functools.lru_cache(maxsize=4)
def _repeated(size: int) -> tuple[int, int, int, int]:
    """Big-integer constants for a chunk of ``size`` bytes: newlines, 0x01s, 0x80s, top bit."""
    return (int.from_bytes(NEWLINE * size, "big"), int.from_bytes(b"\x01" * size, "big"),
            int.from_bytes(b"\x80" * size, "big"), 1 << (8 * size - 1))


def squeeze(chunk: bytes, after_whitespace: bool) -> tuple[bytes, int]:
    """The output bytes of ``chunk`` and how many newlines they hold.

    Every whitespace byte becomes ``\\n``, and every whitespace byte that
    follows whitespace (or starts the chunk, if ``after_whitespace``) is
    dropped. The per-byte work is done on the chunk as one big integer, at
    C speed: ``\\n`` bytes are found with the zero-byte test
    ``(x - 0x01..) & ~x & 0x80..`` on ``x = mapped ^ 0x0a..`` (exact here,
    since no byte of ``mapped`` is 0x0b), and the ones to drop are turned
    into 0x0b and deleted by ``bytes.translate``; the bytes it deleted are
    the newlines not kept.
    """
    size = len(chunk)
    if size < SMALL_CHUNK:
        return _squeeze_small(chunk, after_whitespace)
    newlines, ones, highs, top = _repeated(size)
    mapped = chunk.translate(_TO_NEWLINE)
    value = int.from_bytes(mapped, "big")
    other = value ^ newlines
    # (other - ones) & ~other & highs, kept to non-negative integers (faster in CPython)
    spaces = (other - ones) & ((other & highs) ^ highs)
    previous = spaces >> 8
    if after_whitespace and chunk[0] in WHITESPACE:
        previous |= top
    repeats = spaces & previous
    kept = spaces.bit_count()
    if repeats:
        mapped = (value ^ (repeats >> 7)).to_bytes(size, "big").translate(None, _DELETE)
        kept -= size - len(mapped)
    return mapped, kept


def _squeeze_small(chunk: bytes, after_whitespace: bool) -> tuple[bytes, int]:
    """:func:`squeeze` for a short chunk, where splitting into tokens is cheaper."""
    tokens = chunk.split()
    lead = chunk[0] in WHITESPACE and not after_whitespace
    if not tokens:
        return (NEWLINE, 1) if lead else (b"", 0)
    trail = chunk[-1] in WHITESPACE
    body = NEWLINE.join(tokens)
    if lead or trail:
        body = (NEWLINE if lead else b"") + body + (NEWLINE if trail else b"")
    return body, len(tokens) - 1 + lead + trail


def split_stream(source: BinaryFile, write: Callable[[bytes], object],
                 chunk_size: int = CHUNK_SIZE, after_whitespace: bool = True,
                 finish: bool = True) -> int:
    """Copy the tokens of ``source`` to ``write``, one per line; return the newlines written.

    ``source`` is a binary stream (``readinto`` is used with the compiled
    kernel, ``read`` without it). ``write`` may be handed a view of a reused
    buffer, so it must consume the bytes before it returns, as a file's
    ``write`` does; short writes are completed. ``after_whitespace``
    says whether the byte before the stream is whitespace (true at the start
    of a file); ``finish`` ends the last token with a newline (false for a
    byte range that is not the file's last). With both true the return
    value is the number of tokens.
    """
    compiled = native.kernel()
    if compiled is not None:
        newlines, after_whitespace = _split_compiled(compiled, source.readinto, write,
                                                     chunk_size, after_whitespace)
    else:
        newlines, after_whitespace = _split_python(source.read, write, chunk_size,
                                                   after_whitespace)
    if finish and not after_whitespace:
        _write_all(write, NEWLINE)
        newlines += 1
    return newlines


def _split_python(read, write, chunk_size: int, after_whitespace: bool) -> tuple[int, bool]:
    newlines = 0
    while True:
        chunk = read(chunk_size)
        if not chunk:
            return newlines, after_whitespace
        output, kept = squeeze(chunk, after_whitespace)
        _write_all(write, output)
        newlines += kept
        after_whitespace = chunk[-1] in WHITESPACE


class _Buffers(threading.local):
    """This thread's input and output buffers for the compiled kernel, grown on demand."""

    size = 0

    def get(self, size: int) -> tuple[memoryview, int, memoryview, int]:
        if size > self.size:
            source, target = bytearray(size), bytearray(size)
            self.views = (memoryview(source), _address(source), memoryview(target),
                          _address(target))
            self.size = size
        return self.views


def _address(buffer: bytearray) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


_buffers = _Buffers()


def _split_compiled(squeeze_c: native.Squeeze, readinto, write, chunk_size: int,
                    after_whitespace: bool) -> tuple[int, bool]:
    source, source_at, target, target_at = _buffers.get(chunk_size)
    source = source[:chunk_size]
    state, count = ctypes.c_int(after_whitespace), ctypes.c_size_t(0)
    state_at, count_at = ctypes.byref(state), ctypes.byref(count)
    while True:
        size = readinto(source)
        if not size:
            return count.value, bool(state.value)
        _write_all(write, target[:squeeze_c(source_at, size, target_at, state_at, count_at)])


def _write_all(write: Callable[[bytes], object], data) -> None:
    """``write(data)``, again with the rest after a short write (a raw file may write less)."""
    while True:
        done = write(data)
        if done is None or done >= len(data):
            return
        data = data[done:]


def split_bytes(data: bytes) -> bytes:
    """The reference output for ``data`` (whole in memory; for tests and small inputs)."""
    return b"".join(token + b"\n" for token in data.split())


class _Range:
    """``read`` and ``readinto`` over bytes ``[start, end)`` of an open file."""

    def __init__(self, source, start: int, end: int):
        source.seek(start)
        self._source, self._left = source, end - start

    def read(self, size: int) -> bytes:
        data = self._source.read(min(size, self._left))
        self._left -= len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        size = self._source.readinto(buffer[:self._left])
        self._left -= size
        return size


_INPUT_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _open_regular(path: str) -> tuple[int, int]:
    """``path`` opened for reading (a descriptor, still ``O_NONBLOCK``) and its size;
    :class:`OSError` unless it is a regular file.

    Never blocks on the open: a FIFO (or device) put in place of an input
    after the listing is refused, not waited on. Reads of a regular file do not
    heed ``O_NONBLOCK`` on Linux; where one would (EAGAIN), :func:`_read_whole`
    clears it and reads again, and a stream clears it first (:func:`_blocking`).
    """
    fd = os.open(path, _INPUT_FLAGS)
    try:
        info = os.fstat(fd)
        require_regular(info.st_mode)
        return fd, info.st_size
    except BaseException:
        os.close(fd)
        raise


def _blocking(fd: int) -> int:
    """``fd`` with ``O_NONBLOCK`` cleared (the other status flags F_SETFL sets were not
    asked for, so one call clears it); a read that may not wait could end a file early."""
    fcntl.fcntl(fd, fcntl.F_SETFL, 0)
    return fd


def _open_input(path: str):
    """``path`` opened for unbuffered, blocking reading; :class:`OSError` unless it is a
    regular file (see :func:`_open_regular`)."""
    fd, _ = _open_regular(path)
    try:
        return open(_blocking(fd), "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _read_whole(fd: int, size: int, limit: int) -> bytes | None:
    """Every byte of the open file ``fd`` (``size`` bytes when it was opened), or None if
    it holds more than ``limit``.

    One read of ``size + 1`` bytes that returns exactly ``size`` is the whole file:
    the bytes it held when examined, nothing after them. Otherwise reads until a
    read returns nothing, as ``read()`` does (a file that grew, or a short read).
    """
    chunks, total = [], 0
    while True:
        try:
            chunk = os.read(fd, min(size + 1, limit + 1 - total))
        except BlockingIOError:  # a file system that heeds O_NONBLOCK: wait, as a read does
            _blocking(fd)
            continue
        if not chunk:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if not chunks and len(chunk) == size:
            return chunk
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return None


def _split_small_file(path: str, output: str) -> int | None:
    """The tokens of ``path`` when the compiled kernel split it whole to ``output`` in one
    call (``amlshard_split_small_file`` in ``squeeze.c``: what :meth:`TokenSplitter.process`
    does for a file of up to :data:`WHOLE_FILE_BYTES`, 10 µs a file less on 20,000 tiny
    files); None where it did nothing that can be seen (no kernel, a larger or special file,
    an existing output, an error...) and the file is to be done the Python way."""
    squeeze_c = native.kernel()
    proc_fds = unnamed_files_fd() if squeeze_c is not None else None
    if proc_fds is None or type(output) is not str or "\0" in path or "\0" in output:
        return None  # a NUL would end the path early in C: the Python way refuses it
    _, source_at, _, target_at = _buffers.get(CHUNK_SIZE)  # CHUNK_SIZE > WHOLE_FILE_BYTES
    tokens = squeeze_c.split_small_file(os.fsencode(path),
                                        os.fsencode(output[:output.rfind("/") + 1] or "."),
                                        os.fsencode(output), proc_fds, source_at, target_at,
                                        WHOLE_FILE_BYTES + 1)
    return tokens if tokens >= 0 else None


def split_whole(data: bytes) -> tuple[bytes | bytearray, int]:
    """The output of ``data`` (a whole file) and its number of tokens.

    Up to :data:`PYTHON_SPLIT_BYTES`, ``bytes.split`` and one ``join``; larger, the
    kernel of :func:`split_stream`.
    """
    if len(data) <= PYTHON_SPLIT_BYTES:
        tokens = data.split()
        return (NEWLINE.join(tokens) + NEWLINE if tokens else b""), len(tokens)
    output = bytearray()
    return output, split_stream(io.BytesIO(data), output.extend)


class TokenSplitter(DataProcessor):
    """Writes ``out_dir/REL`` for each input ``input_dir/REL``: its tokens, one per line."""

    version = "1"  # raise it when the output changes: resume then redoes every file
    counts = ("tokens",)

    def __init__(self, input_dir: str, out_dir: str, distrib_args=None):
        super().__init__(distrib_args)
        self.input_dir = input_dir
        self.out_dir = out_dir
        self._prefixes = (os.path.join(input_dir, ""), os.path.join(out_dir, ""))
        native.kernel()  # built (or found wanting) once here, not in every worker

    def output_path(self, path: str) -> str:
        source, target = self._prefixes
        if path.startswith(source):  # the common case, kept cheap: once per file
            return target + path[len(source):]
        return os.path.join(self.out_dir, os.path.relpath(path, self.input_dir))

    def process(self, path: str) -> dict:
        """Split one file; returns ``{"tokens": count}``.

        A file of up to :data:`WHOLE_FILE_BYTES` is read whole and its output written
        in one piece: by the compiled kernel in one call (:func:`_split_small_file`), else
        with :func:`job.atomic.write_bytes`; a larger one is streamed.
        """
        output_path = self.output_path(path)
        tokens = _split_small_file(path, output_path)
        if tokens is not None:
            return {"tokens": tokens}
        fd, size = _open_regular(path)
        try:
            data = _read_whole(fd, size, WHOLE_FILE_BYTES) if size <= WHOLE_FILE_BYTES else None
            if data is None:  # large, or grown past the limit since it was listed
                os.lseek(fd, 0, os.SEEK_SET)
                source = open(_blocking(fd), "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        if data is not None:
            os.close(fd)
            output, tokens = split_whole(data)
            write_bytes(output_path, output)
            return {"tokens": tokens}
        with source:
            with atomic_output(output_path, buffering=0) as sink:
                tokens = split_stream(source, sink.write)
        return {"tokens": tokens}

    def process_range(self, path: str, start: int, end: int, part: str) -> dict:
        """Split bytes ``[start, end)`` of ``path`` into the file ``part``.

        The parts of a file, concatenated in order, are its output (the
        runner appends each to the output as soon as the parts before it are
        done); ``end`` at or past the end of the file finishes the last token.
        """
        with _open_input(path) as source:
            after_whitespace = True
            if start > 0:
                source.seek(start - 1)
                previous = source.read(1)
                after_whitespace = not previous or previous[0] in WHITESPACE
            size = os.fstat(source.fileno()).st_size
            with open(part, "wb", buffering=0) as sink:
                tokens = split_stream(_Range(source, start, end), sink.write,
                                      after_whitespace=after_whitespace, finish=end >= size)
        return {"tokens": tokens}
