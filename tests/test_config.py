"""Config: YAML file, overrides, types; the seed's config_prod.yaml keeps working."""

import pytest

from job import config
from job.cli import parse_arguments
from job.config import ConfigError

from conftest import seed_config

def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_seed_config_loads_with_defaults_for_new_keys(tmp_path):
    loaded = config.load(write(tmp_path, seed_config()))
    assert loaded.input_dir == "data/wikipedia.part1"
    assert loaded.process_count == 10
    assert loaded.distribArgs["node_rank"] == 3
    assert (loaded.shard_strategy, loaded.resume, loaded.error_threshold) == ("contiguous", True, 0)
    assert loaded.max_retries == 1 and loaded.file_timeout is None


def test_overrides_beat_the_file_and_are_read_as_yaml_scalars(tmp_path):
    arguments = parse_arguments(["--config", str(write(tmp_path, seed_config())),
                                 "--process_count", "4", "--distribArgs.node_rank", "1",
                                 "--resume=false", "--file-timeout", "2.5", "--out_dir", "123"])
    loaded = config.load(arguments.config_path, arguments.overrides)
    assert loaded.process_count == 4
    assert loaded.distribArgs["node_rank"] == 1 and loaded.distribArgs["node_count"] == 5
    assert loaded.resume is False and loaded.file_timeout == 2.5
    assert loaded.out_dir == "123"  # text keys keep the value as written


def test_distrib_args_section_created_by_override():
    loaded = config.load(None, [("input_dir", "x"), ("distribArgs.node_count", "5"),
                                ("distribArgs.node_rank", "3")])
    assert loaded.distribArgs == {"node_count": 5, "node_rank": 3}


def test_seed_flag_config_path_is_accepted(tmp_path):
    assert parse_arguments(["--config_path", "a.yaml"]).config_path == "a.yaml"


@pytest.mark.parametrize("overrides, message", [
    ([("bogus", "1")], "unknown key 'bogus'"),
    ([("distribArgs.bogus", "1")], "distribArgs.bogus"),
    ([("process_count.x", "1")], "process_count.x"),
    ([("process_count", "four")], "process_count must be an integer"),
    ([("process_count", "0")], "process_count must be >= 1"),
    ([("process_count", "true")], "process_count must be an integer"),
    ([("resume", "maybe")], "resume must be true or false"),
    ([("shard_strategy", "random")], "shard_strategy must be one of"),
    ([("run_type", "cluster")], "run_type must be one of"),
    ([("error_threshold", "-2")], "error_threshold must be >= -1"),
    ([("file_timeout", "0")], "file_timeout must be a positive number"),
    ([("file_timeout", "infinity")], "file_timeout must be a positive number"),
    ([("file_timeout", "-1e3")], "file_timeout must be a positive number"),
    ([("processor", "nocolon")], "processor must be 'module:Class'"),
    ([("distribArgs.node_rank", "x")], "distribArgs.node_rank must be an integer"),
    ([("log_level", "LOUD")], "log_level must be one of"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config.load(None, [("input_dir", "in"), *overrides])


@pytest.mark.parametrize("text, seconds", [("1e12", 1e12), ("2.5E3", 2500.0), (".5", 0.5),
                                           ("+3e-1", 0.3)])
def test_file_timeout_written_as_yaml_1_2_writes_numbers(text, seconds):
    """PyYAML (YAML 1.1) reads ``1e12`` as text; it is the number every other reader sees."""
    assert config.load(None, [("input_dir", "in"), ("file_timeout", text)]).file_timeout == seconds


def test_missing_input_dir_is_named():
    with pytest.raises(ConfigError, match="input_dir is not set"):
        config.load(None)


@pytest.mark.parametrize("text, message", [
    ("input_dir: [unclosed\n", "is not valid YAML at line"),
    ("- a\n- b\n", "must hold a mapping"),
    ("input_dir: x\nbogus: 1\n", "unknown key 'bogus'"),
    ("input_dir: x\ndistribArgs: 3\n", "distribArgs must be a mapping"),
])
def test_bad_files_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        config.load(write(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")


def test_help_lists_every_key_with_its_default():
    text = config.help_text()
    for key in config.SCHEMA:
        assert f"--{key.name} (" in text
    assert "default contiguous" in text and "default true" in text


@pytest.mark.parametrize("argv, message", [
    (["positional"], "unexpected argument 'positional'"),
    (["--process_count"], "--process_count needs a value"),
])
def test_bad_command_lines(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_arguments(argv)


def test_ranks_of_a_node_share_its_cpus_unless_process_count_is_set(monkeypatch):
    monkeypatch.setattr(config, "usable_cpus", lambda: 16)
    default = config.load(None, [("input_dir", "in")])
    assert (default.workers(), default.workers(4), default.workers(32)) == (16, 4, 1)
    assert config.load(None, [("input_dir", "in"), ("process_count", "3")]).workers(4) == 3


@pytest.mark.parametrize("text", ["0", "7", "12", "010", "0x1f", "1_000", "-3", "+4", "²", "١",
                                  "true", "false", "True", "yes", "null", "~", "", "1.5", "abc",
                                  "[1, 2]", "{a: 1}", "10:20", "-0", "+0", "00", "-", "+", "+-1",
                                  "1 ", " 1", "1\n", "99999999999999999999", "0b11", "1e3",
                                  "TRUE", "Yes", "YES", "no", "No", "NO", "on", "On", "ON",
                                  "off", "Off", "OFF", "False", "FALSE", "Null", "NULL", "y",
                                  "n", "tRUE", "nULL", "~~", "Nil", "none", "None"])
def test_command_line_values_read_as_yaml_reads_them(text):
    import yaml
    expected = yaml.safe_load(text) if text != "" else ""
    got = config.parse_scalar("process_count", text)
    assert got == expected and type(got) is type(expected)


def test_every_spelling_of_a_key_and_values_that_begin_with_a_dash():
    arguments = parse_arguments(["--pattern", "-x*", "--error-threshold", "-1",
                                 "--distribArgs.node-rank=2", "--config-path", "c.yaml",
                                 "--print-config", "--out_dir=o=1"])
    assert arguments.config_path == "c.yaml" and arguments.print_config
    assert arguments.overrides == [("pattern", "-x*"), ("error_threshold", "-1"),
                                   ("distribArgs.node_rank", "2"), ("out_dir", "o=1")]


@pytest.mark.parametrize("argv, message", [
    (["--distribArgs.bogus", "1"], "unknown key 'distribArgs.bogus'; distribArgs takes"),
    (["--process_count.x", "1"], "unknown key 'process_count.x': only distribArgs has sub-keys"),
    (["--proc", "1"], "unknown key 'proc'"),  # no abbreviations
    (["-x"], "unexpected argument '-x'"),
    (["--help=yes"], "--help: ignored explicit argument 'yes'"),
])
def test_unknown_options_are_one_line_naming_the_key(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_arguments(argv)


def test_a_config_compares_prints_and_hashes_as_the_record_of_its_values(tmp_path):
    """JobConfig is a plain class (start-up), but it keeps what it had as a frozen record:
    equality by value, a repr of every key, and a hash that refuses a mapping value."""
    first = config.load(input_dir=str(tmp_path))
    same = config.load(input_dir=str(tmp_path))
    other = config.load(input_dir=str(tmp_path), process_count=3)
    assert first == same and first != other and hash(first) == hash(same)
    assert repr(first).startswith(f"JobConfig(input_dir={str(tmp_path)!r}, out_dir=")
    assert all(f"{name}=" in repr(first) for name in config.KEYS)
    selective = config.load(input_dir=str(tmp_path), distribArgs={"node_count": 2, "node_rank": 1})
    with pytest.raises(TypeError):
        hash(selective)
    with pytest.raises(AttributeError):
        first.process_count = 4
