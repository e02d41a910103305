"""The pool's process and pipe primitives (job.forked), without multiprocessing."""

import collections
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, clean_environ
from job import DataProcessor, ProcessingFailed, forked
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
    frame = b"".join(forked._frame({"results": [1, 2, 3], "text": "é" * 100}))
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


# Found by attacking the pool (each failed on the first version of job.forked).

BIG_ARG_SCRIPT = textwrap.dedent('''
    import resource, sys
    from job import DataProcessor

    class Echo(DataProcessor):
        def process(self, name, shared):
            return (name, len(shared))

    MB = 1 << 20
    shared = b"x" * (32 * MB)          # one large non-list argument: goes to every call
    names = [f"n{i}" for i in range(16)]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    distrib = {"node_count": 1, "node_rank": 0, "local_rank": 0, "local_size": 1}
    out = Echo(distrib).multi_process_data(names, shared, process_count=8)
    assert out == [x for n in names for x in (n, len(shared))], out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(baseline, peak)
''')


def test_a_large_non_list_argument_is_not_buffered_once_per_worker_and_batch():
    """``multi_process_data(names, big, process_count=8)`` with a 32 MB non-list argument.

    The parent's outboxes are unbounded: every worker is handed BATCHES_AHEAD
    batches at once, each a separate pickle of the 32 MB argument, and all of
    them sit in bytearrays in the parent until the pipes drain, so the parent
    peaks at about workers * 2 * 32 MB (≈ 600 MB here; 918 MB with a 50 MB
    argument, and 16 workers with a 200 MB argument would need 6.4 GB). The
    multiprocessing version wrote each batch blocking, one pickle at a time:
    its parent peaked at ≈ 100 MB for the same script (121 MB with 50 MB).
    It is also ~3x slower (14.4 s vs 4.6 s for 200 calls with 20 MB, 4 workers):
    the parent wakes once per 64 KB pipe buffer.
    """
    done = subprocess.run([sys.executable, "-c", BIG_ARG_SCRIPT], env=clean_environ(),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    baseline, peak = map(int, done.stdout.split())
    # the argument itself is held once; a pickle being written is a second copy: allow 4
    assert peak - baseline < 4 * 32, (
        f"parent grew by {peak - baseline} MB to pass a 32 MB argument to 8 workers")


PERSISTENT_EXECUTOR = textwrap.dedent('''
    import concurrent.futures
    from job import TokenSplitter

    _executor = None

    class PersistentExecutor(TokenSplitter):
        """Keeps one ProcessPoolExecutor for all the files its worker processes."""

        def process(self, path):
            global _executor
            if _executor is None:
                _executor = concurrent.futures.ProcessPoolExecutor(2)
            assert _executor.submit(abs, -3).result() == 3
            return super().process(path)
''')


def _processes_naming(text: str) -> list[int]:
    import os
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                command = cmdline.read()
            with open(f"/proc/{name}/stat", "rb") as stat:
                state = stat.read().rpartition(b")")[2].split()[0]
        except OSError:
            continue
        if text.encode() in command and state != b"Z":
            found.append(int(name))
    return found


def test_a_processor_s_own_process_pool_is_not_left_running_after_the_rank_ends(tmp_path):
    """A processor that keeps a ``ProcessPoolExecutor`` (or a daemonic
    ``multiprocessing.Process``) across files: the run succeeds (with the
    multiprocessing pool it failed every file, 'daemonic processes are not
    allowed to have children'), but the executor's processes outlive the rank
    and run forever: ``forked.fork`` ends a worker with ``os._exit`` and skips
    what ``multiprocessing.Process._bootstrap`` ran at the end of a worker
    (``multiprocessing.util._exit_function``, ``threading._shutdown``, so the
    executor's exit hook), and the pool's ``close`` only SIGKILLs the worker itself.
    """
    import os
    import signal
    import time

    from conftest import reference

    (tmp_path / "keeps_pool.py").write_text(PERSISTENT_EXECUTOR)
    data = tmp_path / "in"
    data.mkdir()
    for i in range(6):
        (data / f"f{i}.txt").write_bytes(f"alpha beta {i}\n".encode())
    out = tmp_path / "out-keeps-pool"
    env = clean_environ()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    log = tmp_path / "log.txt"
    try:
        # output to a file: captured through a pipe, the run never ends for its caller, as
        # the executor's processes keep the pipe open (run_job times out)
        with open(log, "wb") as sink:
            done = subprocess.run(
                [sys.executable, "-m", "job", "--input_dir", str(data), "--out_dir", str(out),
                 "--process_count", "2", "--processor", "keeps_pool:PersistentExecutor"],
                env=env, cwd=ROOT, stdout=sink, stderr=sink, timeout=60)
        assert done.returncode == 0, log.read_text()
        for i in range(6):
            rel = f"f{i}.txt"
            assert (out / rel).read_bytes() == reference((data / rel).read_bytes())
        deadline = time.monotonic() + 5
        while _processes_naming(str(out)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _processes_naming(str(out))
        assert not left, f"{len(left)} process(es) of the finished rank still running: {left}"
    finally:
        for pid in _processes_naming(str(out)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


MANAGER_SCRIPT = textwrap.dedent('''
    import multiprocessing
    from job import DataProcessor

    if __name__ == "__main__":
        manager = multiprocessing.Manager()
        shared = manager.dict()
        shared["started"] = True  # the parent uses the proxy: it holds a connection now

        class Tripler(DataProcessor):
            def process(self, name):
                shared[name] = name * 3
                return shared[name]

        names = [f"n{i}" for i in range(8)]
        distrib = {"node_count": 1, "node_rank": 0, "local_rank": 0, "local_size": 1}
        out = Tripler(distrib).multi_process_data(names, process_count=4)
        print("ok" if out == [n * 3 for n in names] else f"wrong: {out}")
        manager.shutdown()
''')


def test_a_manager_proxy_used_by_the_parent_works_in_every_worker():
    """The seed API with a ``multiprocessing.Manager().dict()`` that the user's
    script used before calling ``multi_process_data``: the workers, forked with
    ``os.fork``, skip ``multiprocessing.util._run_after_forkers()`` (which
    ``multiprocessing.Process`` ran in each child), so every worker keeps using
    the parent's connection to the manager, all on one socket: replies go to the
    wrong worker. With 4 names: ``['n0n0n0', 'n1n1n1', None, 'n3n3n3']`` (a
    ``__setitem__`` reply read as a ``__getitem__`` one: silently wrong data);
    with 20 names the run hangs. The multiprocessing pool returned the right
    values every time. Seen too: ``UnpicklingError: invalid load key, '\\x00'`` in
    the workers (the replies interleaved on the socket), 3 of 8 calls failed.
    """
    import os
    import signal

    # its own process group: on a hang the script, its manager and its workers are ended
    script = subprocess.Popen([sys.executable, "-c", MANAGER_SCRIPT], env=clean_environ(),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        stdout, stderr = script.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stdout, stderr = None, "multi_process_data hung with a Manager proxy"
    finally:
        try:
            os.killpg(script.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        script.communicate()
    assert stdout is not None and script.returncode == 0, stderr
    assert stdout == "ok\n"


def _exits_with_sys_exit():
    sys.exit()


def test_a_forked_child_ending_with_sys_exit_and_no_code_exits_0():
    """``forked.fork(target)`` where ``target`` calls ``sys.exit()``: Python, and
    ``multiprocessing.Process`` before, exit 0 for ``SystemExit(None)``; forked
    exits 1 (``stop.code if isinstance(stop.code, int) else 1``). Minor: the pool's
    worker loop catches the processor's SystemExit itself, so only an
    initializer or another user of ``forked.fork`` sees it."""
    from job import forked

    child = forked.fork(_exits_with_sys_exit, ())
    try:
        assert forked.wait([child.sentinel], timeout=30) == {child.sentinel}
        child.join()
        assert child.exitcode == 0
    finally:
        child.close()


QUEUE_SCRIPT = textwrap.dedent('''
    import multiprocessing, queue
    from job import DataProcessor

    if __name__ == "__main__":
        reports = multiprocessing.Queue()  # shared with the workers by inheritance, as documented
        reports.put("hello")
        assert reports.get(timeout=5) == "hello"  # the parent's feeder thread is running

        class Reporter(DataProcessor):
            def process(self, name):
                reports.put(name)
                return name

        names = [f"n{i}" for i in range(8)]
        distrib = {"node_count": 1, "node_rank": 0, "local_rank": 0, "local_size": 1}
        assert Reporter(distrib).multi_process_data(names, process_count=4) == names
        got = []
        try:
            for _ in names:
                got.append(reports.get(timeout=3))
        except queue.Empty:
            pass
        print(sorted(got))
''')


def test_what_workers_put_on_an_inherited_multiprocessing_queue_arrives():
    """Same cause as the Manager test: without ``_run_after_forkers`` a worker's copy
    of a ``multiprocessing.Queue`` the parent had used believes its feeder thread
    runs (threads do not survive ``fork``): ``put`` buffers the item and nothing
    ever sends it. 0 of 8 items arrive (silently); the multiprocessing pool: 8 of 8.
    """
    done = subprocess.run([sys.executable, "-c", QUEUE_SCRIPT], env=clean_environ(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == str([f"n{i}" for i in range(8)]) + "\n"


class _NeedsTwo(Exception):
    """Pickles, but does not unpickle: ``Exception.__reduce__`` passes one argument."""

    def __init__(self, message, detail):
        super().__init__(message)
        self.detail = detail


def _returns_needs_two(index):
    return _NeedsTwo("a value", index) if index == 1 else index


def test_a_value_that_does_not_unpickle_in_the_parent_fails_its_call_only():
    """A result that pickles in the worker but raises when the parent unpickles it
    (an exception instance with a two-argument ``__init__``, returned as a value)
    escapes ``WorkerPool.imap`` as ``TypeError: _NeedsTwo.__init__() missing 1 required
    positional argument``: ``multi_process_data`` raises that instead of
    ``ProcessingFailed``, and the other calls' results are lost. Not new: the
    multiprocessing pool did the same (``Connection.recv`` unpickled it)."""
    from job.pool import WorkerPool

    with WorkerPool(_returns_needs_two, 2) as pool:
        outcomes = {o.key: o for o in pool.imap((k, (k,)) for k in range(4))}
    assert sorted(outcomes) == [0, 1, 2, 3]
    assert [outcomes[k].value for k in (0, 2, 3)] == [0, 2, 3]
    assert not outcomes[1].ok and "_NeedsTwo" in outcomes[1].error


NAMES_SCRIPT = textwrap.dedent('''
    import multiprocessing, os
    from job import DataProcessor

    class PerWorkerFile(DataProcessor):
        """Appends to a file of its own worker, named as many scripts name them."""

        def process(self, index):
            return [(multiprocessing.current_process().name, os.getpid())]

    if __name__ == "__main__":
        distrib = {"node_count": 1, "node_rank": 0, "local_rank": 0, "local_size": 1}
        seen = PerWorkerFile(distrib).multi_process_data(list(range(16)), process_count=4)
        names = {}
        for name, pid in seen:
            names.setdefault(name, set()).add(pid)
        print(multiprocessing.current_process().name, sorted(names),
              max(len(pids) for pids in names.values()))
''')


def test_each_worker_is_a_process_of_its_own_for_multiprocessing():
    """In a worker, ``multiprocessing.current_process()`` is the parent's object: every
    worker is named ``MainProcess`` (as the parent), with ``_identity == ()`` and
    ``parent_process() is None``. A processor that names per-worker outputs or logs
    after ``current_process().name`` (a common pattern) now has 4 processes writing
    one file. The multiprocessing pool gave ``ForkProcess-1`` .. ``-4``.
    """
    done = subprocess.run([sys.executable, "-c", NAMES_SCRIPT], env=clean_environ(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    parent, *names, most_pids_per_name = done.stdout.split()
    assert parent == "MainProcess" and "'MainProcess'" not in " ".join(names), done.stdout
    assert most_pids_per_name == "1", f"one name shared by several workers: {done.stdout}"


# Found by the second attack on the pool.

class WorkerOnlyClass(DataProcessor):
    """Returns an instance of a class made (and made a module global) in the worker only:
    its pickle loads in the worker, which checks it, but not in the rank's process."""

    def process(self, value):
        if value % 2:
            return value
        module = sys.modules[__name__]
        module.RowMadeInWorker = collections.namedtuple("RowMadeInWorker", "value")
        return module.RowMadeInWorker(value)


def test_a_result_that_loads_in_the_worker_but_not_in_the_parent_fails_its_call():
    """``job.forked.write_message`` checks that a result's pickle loads again, in the worker;
    the parent's ``Channel.receive`` loads it once more, unguarded, and the AttributeError
    escapes ``WorkerPool.imap`` (and ``multi_process_data``), losing every other result."""
    with pytest.raises(ProcessingFailed) as caught:
        WorkerOnlyClass({"node_count": 1}).multi_process_data(list(range(6)), process_count=2)
    assert sorted(caught.value.failures) == [0, 2, 4]
    assert caught.value.results == [1, 3, 5]


def _worker_only(value):
    return WorkerOnlyClass().process(value)


def test_the_pool_goes_on_after_a_result_the_parent_cannot_load():
    with WorkerPool(_worker_only, 2) as pool:
        outcomes = {o.key: o for o in pool.imap((i, (i,)) for i in range(6))}
    assert sorted(outcomes) == list(range(6))
    assert [k for k, o in sorted(outcomes.items()) if o.ok] == [1, 3, 5]


SLOW_MMAP = '''\
import importlib.machinery, importlib.util, os, sys, time
sys.stderr.write("importing\\n"); sys.stderr.flush()
time.sleep(3)  # the job's imports are slow (a cold blob-mounted code folder)
del sys.modules["mmap"]
_dir = os.path.join(sys.base_prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "lib-dynload")
_spec = importlib.machinery.PathFinder.find_spec("mmap", [_dir])
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)
sys.modules["mmap"] = _real
'''


def test_ctrl_c_while_the_job_imports_is_one_line_and_130(tmp_path, eight_files):
    """SIGINT while ``python -m job`` imports its modules (``job/__main__.py``, before
    ``main`` installs its handling): a KeyboardInterrupt traceback (runpy, job.cli,
    job.run ...), not one line. Old too (e889461)."""
    import os
    import signal
    import subprocess
    import time

    from conftest import clean_environ

    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "mmap.py").write_text(SLOW_MMAP)  # job.forked imports mmap
    env = clean_environ()
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), env["PYTHONPATH"]])
    process = subprocess.Popen([sys.executable, "-m", "job", "--input_dir", str(eight_files),
                                "--out_dir", str(tmp_path / "out")], env=env,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr.readline() == "importing\n"
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert process.returncode == 130
