"""A pre-warmed interpreter that forks one process per ``python -m submit`` run.

:mod:`azure_standin.runner` starts this file's source with ``python -c SOURCE FD MODULE...``
(never imports it): it imports the MODULEs (the Azure SDK, 1.5 s of CPU), then serves
runs over the socket FD, one at a time. For each run it forks a child that becomes what
``python -m submit ARGS`` (or ``python -c WRAPPER ARGS``) would be in a fresh interpreter
started with the run's environment and folder: its own pid, ``argv``, ``os.environ``,
working folder, ``sys.path[0]``, ``__main__``, stdin (``/dev/null``), stdout and stderr
(the test's pipes, passed over the socket), exit code. The child runs the command at the
top level of this script, so that its exit, an uncaught exception or a ``KeyboardInterrupt``
end it as they end ``python -m``. This process waits for the child and answers its pid
and exit code (negative: the signal that ended it).

What a child takes over from this process, and how the runner keeps that honest:

- the modules imported here. While they are imported, every read of ``os.environ`` is
  recorded (the SDK reads ``AZUREML_RUN_POLLING_INTERVAL_MIN`` at import time) and every
  connection is refused and counted; the runner uses this interpreter only for runs
  whose environment has the same values for what was read and for the variables the
  interpreter itself reads as it starts (``PYTHON*``, locale), and not at all if
  importing printed anything, connected anywhere, started a thread or left a file open;
- ``tempfile``'s cached folder is dropped, so that a child finds its own ``TMPDIR``;
- ``random`` reseeds itself in a forked child (CPython does it); the hash seed of
  ``str`` is this interpreter's, the same for every child.
"""

import collections.abc
import json
import os
import socket
import sys
import threading
import types

channel = socket.socket(fileno=int(sys.argv[1]))
modules = sys.argv[2:]


class RecordingEnviron(collections.abc.MutableMapping):
    """``os.environ`` while the modules are imported: the same mapping, its reads recorded
    as ``[module whose import read it, variable or "*" for a listing, value]``.

    A module that keeps ``from os import environ`` keeps this object, which goes on
    reading and writing the real ``os.environ`` (no longer recording)."""

    def __init__(self, real):
        self.real, self.read, self.recording = real, [], True

    def _note(self, key, value=None):
        if self.recording:
            frame = sys._getframe(2)
            while frame is not None and frame.f_code.co_name != "<module>":
                frame = frame.f_back
            module = frame.f_globals.get("__name__", "?") if frame is not None else "?"
            entry = [module, key, value]
            if entry not in self.read:
                self.read.append(entry)

    def __getitem__(self, key):
        self._note(key, self.real.get(key))
        return self.real[key]

    def get(self, key, default=None):
        self._note(key, self.real.get(key))
        return self.real.get(key, default)

    def __contains__(self, key):
        self._note(key, self.real.get(key))
        return key in self.real

    def __iter__(self):
        self._note("*")
        return iter(self.real)

    def __len__(self):
        return len(self.real)

    def __setitem__(self, key, value):
        self._note(key, self.real.get(key))
        self.real[key] = value

    def __delitem__(self, key):
        self._note(key, self.real.get(key))
        del self.real[key]

    def copy(self):
        self._note("*")
        return self.real.copy()


def preload(names):
    """Import ``names``; return what it read of the environment and the connections it tried."""
    real, recording = os.environ, RecordingEnviron(os.environ)
    attempts = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(self, address, *args, **kwargs):
        attempts.append(repr(address))
        raise OSError(f"no connection while the test interpreter is being warmed: {address}")

    os.environ = recording
    socket.socket.connect, socket.socket.connect_ex = refuse, lambda self, a: refuse(self, a)
    try:
        for name in names:
            __import__(name)
    finally:
        recording.recording = False
        os.environ = real
        socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    return recording.read, attempts


def open_fds():
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd")
                  if int(fd) > 2 and int(fd) != channel.fileno())


def serve():
    """Answer runs until the runner closes the socket; in a forked child, return its run."""
    while True:
        message, fds, _, _ = socket.recv_fds(channel, 1 << 22, 2)
        if not message:
            os._exit(0)
        run = json.loads(message)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            channel.close()
            return run, fds
        for fd in fds:
            os.close(fd)
        channel.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        channel.send(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())


open_before = open_fds()  # it holds the descriptor of its own listing
read, attempts = preload(modules)
leftover = sorted(set(open_fds()) - set(open_before))
channel.send(json.dumps({"read": read, "connections": attempts, "modules": modules,
                         "threads": threading.active_count(), "open_fds": leftover}).encode())
run, (stdout_fd, stderr_fd) = serve()

# --- the child: the process a fresh ``python -m submit`` would have been ------------------------
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.dup2(stdout_fd, 1)
os.dup2(stderr_fd, 2)
for fd in (null, stdout_fd, stderr_fd):
    os.close(fd)
os.chdir(run["cwd"])
os.environ.clear()
os.environ.update(run["env"])
if "tempfile" in sys.modules:
    sys.modules["tempfile"].tempdir = None
sys.path_importer_cache.clear()
__import__("importlib").invalidate_caches()
main = types.ModuleType("__main__")
main.__dict__.update(__builtins__=__builtins__, __annotations__={})  # as the interpreter's own
sys.modules["__main__"] = main
if "__mp_main__" in sys.modules:  # multiprocessing's alias of __main__
    sys.modules["__mp_main__"] = main
sys.orig_argv = [sys.executable, *run["interpreter_args"], *run["argv"]]
if run["module"]:  # python -m MODULE ARGS: sys.path[0] is the working folder
    sys.argv = [run["module"], *run["argv"]]
    sys.path[0] = os.getcwd()
    __import__("runpy")._run_module_as_main(run["module"])
else:  # python -c SOURCE ARGS
    sys.argv = ["-c", *run["argv"]]
    sys.path[0] = ""
    main.__dict__["_PRELOADED"] = frozenset(sys.modules)  # for the network wrapper's report
    exec(compile(run["source"], "<string>", "exec"), main.__dict__)
