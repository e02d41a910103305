"""The pool's process and pipe primitives (job.forked), without multiprocessing."""

import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, clean_environ
from job import forked
from job.pool import WorkerPool

MB = 1 << 20


def echo_large(size):
    return b"r" * size


def test_large_batches_and_large_results_do_not_deadlock():
    """Batches and results far larger than a pipe's buffer (64 KiB), both ways at once:
    the parent never blocks on a write, so neither side waits on the other for ever."""
    items = [(i, (b"a" * MB, 2 * MB)) for i in range(24)]

    started = time.monotonic()
    with WorkerPool(lambda payload, size: (len(payload), echo_large(size)), 2) as workers:
        outcomes = {o.key: o for o in workers.imap(items, batch_size=8)}
    assert time.monotonic() - started < 60
    assert sorted(outcomes) == list(range(24))
    assert all(o.ok and o.value == (MB, b"r" * 2 * MB) for o in outcomes.values())


def test_a_message_cut_anywhere_is_received_once_whole():
    read_end, write_end = os.pipe()
    other_read, other_write = os.pipe()
    channel = forked.Channel(other_write, read_end)
    frame = forked._frame({"results": [1, 2, 3], "text": "é" * 100})
    try:
        for cut in (1, forked.HEADER - 1, forked.HEADER, forked.HEADER + 5, len(frame) - 1):
            os.write(write_end, frame[:cut])
            assert channel.receive() == []
            os.write(write_end, frame[cut:] + frame)
            assert channel.receive() == [{"results": [1, 2, 3], "text": "é" * 100}] * 2
        os.close(write_end)
        assert channel.receive() == [] and channel.closed_by_worker
    finally:
        channel.close()
        os.close(other_read)


def exit_with(how):
    if how == "return":
        return
    if how == "exit 3":
        raise SystemExit(3)
    if how == "raise":
        raise RuntimeError("in the child")
    os.kill(os.getpid(), 9)


@pytest.mark.parametrize("how, code", [("return", 0), ("exit 3", 3), ("raise", 1),
                                       ("kill", -9)])
def test_a_child_s_exit_code_says_how_it_ended(how, code):
    child = forked.fork(exit_with, (how,))
    try:
        assert forked.wait([child.sentinel], timeout=30) == {child.sentinel}
        child.join()
        assert child.exitcode == code and not child.is_alive()
    finally:
        child.close()


STREAMS = """
import sys
from job.pool import WorkerPool

def work(_):
    return sys.stdin.read()

print("printed before the workers started", end="")  # still in the buffer: stdout is a pipe
with WorkerPool(work, 2) as workers:
    read = [o.value for o in workers.imap([(0, (0,)), (1, (1,))])]
print(" | workers read", read)
"""


def test_workers_neither_print_the_parent_s_buffer_again_nor_read_its_stdin():
    result = subprocess.run([sys.executable, "-c", STREAMS], input="the parent's input",
                            capture_output=True, text=True, env=clean_environ(), cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "printed before the workers started | workers read ['', '']\n"
