"""The bad-input matrix: exit 2, one clear line naming the problem, no traceback, nothing written."""

import os

import pytest

from job import cli
from job.config import KEYS, SCHEMA

from conftest import clean_environ, run_job


@pytest.fixture
def inputs(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("a b c\n")
    return source


def bad_config(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


CASES = {
    "unknown key": (lambda t, i: ["--input_dir", i, "--bogus", "1"], {}, "unknown key 'bogus'"),
    "wrong type": (lambda t, i: ["--input_dir", i, "--process_count", "many"], {},
                   "process_count must be an integer"),
    "missing config": (lambda t, i: ["--config", str(t / "nope.yaml")], {},
                       "nope.yaml' does not exist"),
    "malformed yaml": (lambda t, i: ["--config", bad_config(t, "input_dir: [x\n")], {},
                       "is not valid YAML"),
    "unknown key in file": (lambda t, i: ["--config", bad_config(t, f"input_dir: {i}\nfoo: 1\n")],
                            {}, "unknown key 'foo'"),
    "missing input_dir": (lambda t, i: [], {}, "input_dir is not set"),
    "input_dir missing": (lambda t, i: ["--input_dir", str(t / "missing")], {}, "does not exist"),
    "node_rank out of range": (lambda t, i: ["--input_dir", i, "--distribArgs.node_count", "5",
                                             "--distribArgs.node_rank", "5"], {},
                               "distribArgs.node_rank=5 is out of range"),
    "garbage OMPI rank": (lambda t, i: ["--input_dir", i], {"OMPI_COMM_WORLD_RANK": "x",
                                                           "OMPI_COMM_WORLD_SIZE": "2"},
                          "OMPI_COMM_WORLD_RANK must be an integer"),
    "torch rank beyond world": (lambda t, i: ["--input_dir", i], {"RANK": "3", "WORLD_SIZE": "2"},
                                "RANK=3 is out of range"),
    "processor not importable": (lambda t, i: ["--input_dir", i, "--processor", "nope.mod:X"], {},
                                 "cannot import 'nope.mod'"),
    "processor not a DataProcessor": (lambda t, i: ["--input_dir", i, "--processor", "os:path"],
                                      {}, "not a DataProcessor subclass"),
    "count named like a record field": (
        lambda t, i: ["--input_dir", i, "--processor", "odd_processors:CountsSeconds"], {},
        "counts: 'seconds' is already a field of every journal record or of the totals"),
    "count named twice": (
        lambda t, i: ["--input_dir", i, "--processor", "odd_processors:CountsTwice"], {},
        "counts: 'tokens' is named twice"),
    "positional argument": (lambda t, i: ["--input_dir", i, "extra"], {},
                            "unexpected argument 'extra'"),
    "infinite file_timeout": (lambda t, i: ["--input_dir", i, "--file_timeout", ".inf"], {},
                              "file_timeout must be a positive number"),
    "nan file_timeout": (lambda t, i: ["--input_dir", i, "--file_timeout", ".nan"], {},
                         "file_timeout must be a positive number"),
    "empty input_dir": (lambda t, i: ["--input_dir", ""], {}, "input_dir is empty"),
    "unclosed bracket in pattern": (lambda t, i: ["--input_dir", i, "--pattern", "[ab.txt"], {},
                                    "'[' without its closing ']'"),
    "empty pattern": (lambda t, i: ["--input_dir", i, "--pattern", ""], {}, "pattern is empty"),
    "absolute pattern": (lambda t, i: ["--input_dir", i, "--pattern", "/etc/*"], {},
                         "must be relative to input_dir"),
    "node_count without node_rank": (lambda t, i: ["--input_dir", i,
                                                   "--distribArgs.node_count", "5"], {},
                                     "distribArgs.node_count=5 is set without "
                                     "distribArgs.node_rank"),
    "OMPI and RANK disagree": (lambda t, i: ["--input_dir", i],
                               {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
                                "RANK": "0", "WORLD_SIZE": "2"},
                               "OMPI_COMM_WORLD_RANK=1 and RANK=0 disagree"),
    "AZUREML_NODE_COUNT without task index": (lambda t, i: ["--input_dir", i],
                                              {"AZUREML_NODE_COUNT": "4"},
                                              "AZUREML_NODE_COUNT=4 is set without "
                                              "AZ_BATCHAI_TASK_INDEX"),
    "distribArgs under a launcher": (lambda t, i: ["--input_dir", i,
                                                   "--distribArgs.node_count", "5",
                                                   "--distribArgs.node_rank", "3"],
                                     {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "5"},
                                     "distribArgs is set, but OMPI_COMM_WORLD_SIZE=5"),
    "NUL in input_dir": (lambda t, i: ["--config", bad_config(t, f'input_dir: "{i}\\0x"\n')],
                         {}, "input_dir holds a NUL byte"),
    "NUL in processor": (lambda t, i: ["--input_dir", i, "--config",
                                       bad_config(t, 'processor: "job.tokens\\0:X"\n')], {},
                         "processor holds a NUL byte"),
    "NUL in pattern": (lambda t, i: ["--input_dir", i, "--config",
                                     bad_config(t, 'pattern: "*.txt\\0"\n')], {},
                       "pattern holds a NUL byte"),
}


def test_a_nul_byte_in_out_dir_is_refused(tmp_path, inputs):
    config = bad_config(tmp_path, f'input_dir: "{inputs}"\nout_dir: "o\\0x"\n')
    before = sorted(tmp_path.rglob("*"))
    result = run_job("--config", config, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: out_dir holds a NUL byte, which no path can hold"], result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_a_nul_byte_in_the_config_path_is_refused(tmp_path):
    from job import CustomArgParser
    with pytest.raises(SystemExit) as stop:
        CustomArgParser(default_yamlfile=str(tmp_path / "a\0b.yaml")).parse([])
    assert stop.value.code == 2


def test_out_dir_in_a_stage_s_journals_is_refused(tmp_path):
    """Stage 2 reads stage 1's outputs; stage 1's _manifest is its bookkeeping, never an out_dir."""
    stage1 = tmp_path / "s1"
    (stage1 / "_manifest").mkdir(parents=True)
    (stage1 / "a.txt").write_text("a b\n")
    journal = stage1 / "_manifest" / "shard-00000-of-00001.jsonl"
    journal.write_bytes(b'{"input": "a.txt"}\n')
    for out in ("s1/_manifest", "s1/_manifest/", "s1/_manifest/deeper", "s1/./_manifest"):
        result = run_job("--input_dir", "s1", "--out_dir", out, cwd=tmp_path)
        assert result.returncode == 2, (out, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "reserved _manifest folder" in lines[0], result.stderr
    assert sorted(p.name for p in (stage1 / "_manifest").iterdir()) == [journal.name]
    assert journal.read_bytes() == b'{"input": "a.txt"}\n'
    result = run_job("--input_dir", "s1", "--out_dir", "s1/manifest_not", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # a look-alike name is an ordinary out_dir


@pytest.mark.parametrize("seconds", ["2200000", "1e12", "1.0e+300"])
def test_a_huge_finite_file_timeout_is_honoured(tmp_path, inputs, seconds):
    """Beyond what one wait of the operating system takes (poll: 2**31 ms, about 24.8 days)."""
    out = tmp_path / "out"
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--file_timeout", seconds,
                     "--process_count", "1")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "a.txt").read_bytes() == b"a\nb\nc\n"


def test_empty_out_dir_is_refused(tmp_path, inputs):
    before = sorted(tmp_path.rglob("*"))
    result = run_job("--input_dir", str(inputs), "--out_dir", "", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "out_dir is empty" in lines[0], result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_input_dir_inside_out_dir_is_refused(tmp_path):
    out = tmp_path / "o"
    data = out / "data"
    data.mkdir(parents=True)
    (data / "b.txt").write_bytes(b"keep me\n")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = run_job("--input_dir", str(data), "--out_dir", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is inside out_dir" in lines[0], result.stderr
    assert (data / "b.txt").read_bytes() == b"keep me\n"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written


def test_out_dir_that_is_a_file_is_refused(tmp_path, inputs):
    target = tmp_path / "out"
    target.write_bytes(b"not a folder")
    for resume in ("true", "false"):
        result = run_job("--input_dir", str(inputs), "--out_dir", str(target), "--resume", resume)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "exists and is not a folder" in lines[0], result.stderr
    assert target.read_bytes() == b"not a folder"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line(case, tmp_path, inputs):
    make_args, environ, message = CASES[case]
    out = tmp_path / "out"
    result = run_job(*make_args(tmp_path, str(inputs)), "--out_dir", str(out),
                     env=clean_environ(**environ))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists(), "nothing may be written on bad input"


def test_unreadable_config_file(tmp_path, inputs):
    if os.geteuid() == 0:
        # root reads any file: a folder given as the config stands in for an unreadable file
        path = tmp_path / "folder.yaml"
        path.mkdir()
    else:
        path = tmp_path / "secret.yaml"
        path.write_text("input_dir: x\n")
        path.chmod(0)
    result = run_job("--config", str(path))
    assert result.returncode == 2 and path.name in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_every_key():
    result = run_job("--help")
    assert result.returncode == 0
    assert len(SCHEMA) >= 15
    for key in SCHEMA:
        assert f"--{key.name} ({key.kind}, default " in result.stdout, key.name
        assert " ".join(key.help.split()[:4]) in " ".join(result.stdout.split()), key.name


#: A value of the wrong type or out of range for each declared key.
BAD_VALUES = {"input_dir": "", "out_dir": "", "process_count": "0", "run_type": "cluster",
              "distribArgs": "5", "processor": "no_class", "shard_strategy": "random",
              "pattern": "/abs/*", "resume": "maybe", "error_threshold": "-2",
              "max_retries": "many", "file_timeout": "-1", "log_level": "loud",
              "progress_interval": "0", "journal_sync_interval": "never"}


@pytest.mark.parametrize("key", [key.name for key in SCHEMA])
def test_a_bad_value_of_any_key_is_one_line_naming_it(key, tmp_path, inputs, capsys):
    assert set(BAD_VALUES) == set(KEYS), "give each declared key a bad value here"
    args = ["--input_dir", str(inputs), "--out_dir", str(tmp_path / "out")]
    for spelling in (f"--{key}", f"--{key.replace('_', '-')}="):
        argv = args + ([spelling, BAD_VALUES[key]] if not spelling.endswith("=")
                       else [spelling + BAD_VALUES[key]])
        assert cli.main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_print_config_shows_the_resolved_config(inputs):
    result = run_job("--input_dir", str(inputs), "--process_count", "3", "--print_config")
    assert result.returncode == 0
    assert "process_count: 3" in result.stdout and "shard_strategy: contiguous" in result.stdout


def test_a_journals_folder_that_links_into_the_inputs_is_refused(tmp_path, inputs):
    (inputs / "shard-00000-of-00001.json").write_bytes(b"precious\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(inputs, out / "_manifest")
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a link: the journals must live in out_dir" in lines[0]
    assert sorted(p.name for p in inputs.iterdir()) == ["a.txt", "shard-00000-of-00001.json"]
    assert (inputs / "shard-00000-of-00001.json").read_bytes() == b"precious\n"


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_refusal_is_written_does_not_cut_it(tmp_path, monkeypatch, capsys,
                                                                signum):
    """Under mpirun every rank may refuse the same config, and mpirun sends SIGTERM to the
    others as soon as one exits 2: one that arrives while a rank writes its line (seen once
    in a loaded full run) made a traceback and exit 1."""
    import signal
    import sys

    class Signalling:
        def __init__(self, stream):
            self.stream, self.sent = stream, False

        def write(self, text):
            if not self.sent:
                self.sent = True
                os.kill(os.getpid(), getattr(signal, signum))
            return self.stream.write(text)

        def flush(self):
            self.stream.flush()

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(sys, "stderr", Signalling(sys.stderr))
    code = cli.main(["--input_dir", str(tmp_path / "missing")])
    monkeypatch.undo()
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
