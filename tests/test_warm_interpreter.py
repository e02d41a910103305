"""The runner's pre-warmed interpreter: a run forked from it is the process a fresh one would be.

``run_submit`` forks each ``python -m submit`` run from an interpreter that imported the
Azure SDK once (tests/azure_standin/zygote.py). Here a probe runs both ways, as
``python -c`` and as ``python -m``, and reports what its process sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from azure_standin import runner

PROBE = r'''
import json, os, signal, sys, tempfile, threading
main = sys.modules["__main__"]
print(json.dumps({
    "argv": sys.argv, "orig_argv": sys.orig_argv[1:], "cwd": os.getcwd(),
    "path": sys.path, "environ": dict(os.environ), "temporary": tempfile.gettempdir(),
    "stdin": sys.stdin.read(), "flags": list(sys.flags), "name": __name__,
    "main": sorted(name for name in vars(main) if name != "_PRELOADED"),
    "file": getattr(main, "__file__", None), "parent": os.getpgid(0) == os.getpgid(os.getppid()),
    "signals": {s.name: str(signal.getsignal(s))
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD)},
    "open": sorted(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
    "streams": [[s.encoding, s.errors, s.line_buffering, s.write_through]
                for s in (sys.stdout, sys.stderr)],
}, sort_keys=True))
print("\u00e9 on stderr\r\nthe second line", file=sys.stderr)
if sys.argv[-1] == "raise":
    raise ValueError("raised by the probe")
sys.exit(int(sys.argv[-1]))
'''


@pytest.fixture
def warm(tmp_path):
    env = runner.clean_environment(TMPDIR=str(tmp_path), PROBE_VARIABLE="x y")
    interpreter = runner._warm_interpreter(env)
    assert interpreter is not None, "the warm interpreter is not used: see the warning"
    return interpreter, env


def both_ways(warm, tmp_path, interpreter_args, *argv):
    interpreter, env = warm
    forked = interpreter.run(interpreter_args, list(argv), env, tmp_path, timeout=60)
    fresh = subprocess.run([sys.executable, *interpreter_args, *argv], env=env, cwd=tmp_path,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    return forked, (fresh.returncode, fresh.stdout, fresh.stderr)


@pytest.mark.parametrize("how", ["-c", "-m"])
def test_a_forked_run_sees_what_a_fresh_interpreter_sees(warm, tmp_path, how):
    (tmp_path / "probe.py").write_text(PROBE)
    interpreter_args = ["-c", PROBE] if how == "-c" else ["-m", "probe"]
    forked, fresh = both_ways(warm, tmp_path, interpreter_args, "an argument", "3")
    assert forked[0] == fresh[0] == 3
    assert forked[2] == fresh[2] == "\u00e9 on stderr\nthe second line\n"
    assert json.loads(forked[1]) == json.loads(fresh[1])


def test_an_uncaught_exception_and_a_signal_end_it_as_they_end_a_fresh_one(warm, tmp_path):
    forked, fresh = both_ways(warm, tmp_path, ["-c", PROBE], "raise")
    assert forked[0] == fresh[0] == 1
    assert forked[2].splitlines()[-1] == fresh[2].splitlines()[-1] == \
        "ValueError: raised by the probe"
    for source, code in (("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -15),
                         ("raise KeyboardInterrupt", -2)):
        forked, fresh = both_ways(warm, tmp_path, ["-c", source])
        assert forked[0] == fresh[0] == code


def test_a_run_past_its_timeout_is_killed(warm, tmp_path):
    interpreter, env = warm
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        interpreter.run(["-c", "import time; print('started', flush=True); time.sleep(60)"], [],
                        env, tmp_path, timeout=1)
    assert time.monotonic() - started < 30
    assert expired.value.output == "started\n"


def test_what_the_import_read_must_agree_and_the_sdk_shows_as_preloaded(warm, tmp_path):
    interpreter, env = warm
    read = {name for _, name, _ in interpreter.read}
    assert "AZUREML_RUN_POLLING_INTERVAL_MIN" in read  # the SDK reads it as it is imported
    assert interpreter.serves({**env, "TMPDIR": "/elsewhere", "AZURE_CLIENT_ID": "x"})
    assert not interpreter.serves({**env, "AZUREML_RUN_POLLING_INTERVAL_MIN": "7"})
    assert not interpreter.serves({**env, "PYTHONHASHSEED": "1"})
    assert not interpreter.serves({**env, "TQDM_DISABLE": "1"})
    result = runner.run_submit("--help", cwd=tmp_path, no_network=True)
    assert result.returncode == 0
    assert runner.network_report(result) == {"connections": "0", "identity": "False",
                                             "sdk": "preloaded"}
    result = runner.run_submit("--help", cwd=tmp_path, no_network=True, fresh=True)
    assert runner.network_report(result)["sdk"] == "False"


def test_job_runs_forked_from_a_warm_interpreter_end_as_fresh_ones(tmp_path, corpus):
    """``run_job`` forks from an interpreter that imported ``job.cli``: the same exit code,
    output and outputs as a fresh ``python -m job``, for a run, a bad key and ``--help``."""
    from conftest import run_job

    source = corpus
    cases = [["--input_dir", str(source), "--process_count", "2"],
             ["--input_dir", str(source), "--bogus", "1"], ["--help"]]
    for number, args in enumerate(cases):
        runs = {}
        for fresh in (True, False):
            out = tmp_path / f"out-{number}-{fresh}"
            done = run_job(*args, "--out_dir", str(out), "--log_level", "WARNING", fresh=fresh)
            outputs = sorted((p.relative_to(out).as_posix(), p.read_bytes())
                             for p in out.rglob("*") if p.is_file() and "_manifest" not in p.parts
                             ) if out.exists() else []
            runs[fresh] = (done.returncode, done.stdout, done.stderr.replace(str(out), "OUT"),
                           outputs)
        assert runs[True] == runs[False], args
    assert runs[True][0] == 0 and "--input_dir" in runs[True][1]
