"""The shipped processor: a whitespace token splitter, one token per output line.

A token is a maximal run of bytes that are not ASCII whitespace (space, tab,
newline, vertical tab, form feed, carriage return): exactly ``bytes.split()``.
Any bytes pass through. The output of a file is, byte for byte::

    b"".join(token + b"\\n" for token in data.split())

The file is streamed in chunks, so memory stays flat however large the file
or its tokens are. Copy this class as the model for your own processor.
"""

from __future__ import annotations

import os
from typing import Callable

from .atomic import atomic_output
from .processor import DataProcessor

CHUNK_SIZE = 1 << 20


def split_stream(read: Callable[[int], bytes], write: Callable[[bytes], object],
                 chunk_size: int = CHUNK_SIZE) -> int:
    """Copy the tokens of ``read`` to ``write``, each followed by ``\\n``; return their count.

    A token that straddles two chunks is written in two pieces with no
    newline between them, so nothing is held back across chunks.
    """
    tokens = 0
    open_token = False  # the last chunk ended inside a token whose newline is owed
    while True:
        chunk = read(chunk_size)
        if not chunk:
            break
        parts = chunk.split()
        if open_token:
            if chunk[:1].isspace():
                write(b"\n")
            else:
                tokens -= 1  # the first part continues the previous token
        if not parts:
            open_token = False
            continue
        tokens += len(parts)
        write(b"\n".join(parts))
        open_token = not chunk[-1:].isspace()
        if not open_token:
            write(b"\n")
    if open_token:
        write(b"\n")
    return tokens


def split_bytes(data: bytes) -> bytes:
    """The reference output for ``data`` (whole in memory; for tests and small inputs)."""
    return b"".join(token + b"\n" for token in data.split())


class TokenSplitter(DataProcessor):
    """Writes ``out_dir/REL`` for each input ``input_dir/REL``: its tokens, one per line."""

    def __init__(self, input_dir: str, out_dir: str, distrib_args=None):
        super().__init__(distrib_args)
        self.input_dir = input_dir
        self.out_dir = out_dir

    def output_path(self, path: str) -> str:
        return os.path.join(self.out_dir, os.path.relpath(path, self.input_dir))

    def process(self, path: str) -> dict:
        """Split one file; returns ``{"tokens": count, "bytes_in": size}``."""
        with open(path, "rb", buffering=0) as source:
            size = os.fstat(source.fileno()).st_size
            with atomic_output(self.output_path(path)) as sink:
                tokens = split_stream(source.read, sink.write)
        return {"tokens": tokens, "bytes_in": size}
