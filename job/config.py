"""The job's configuration: one declared schema, YAML file, command-line overrides.

Precedence: defaults < YAML file (``--config PATH``) < ``--KEY VALUE`` and
``--SECTION.KEY VALUE`` overrides. Override values are read as YAML scalars
(``--resume false``, ``--file_timeout 30``); keys of type text take the
value as written. Every key is checked for name and type; any error is a
:class:`ConfigError` whose message is one line naming the key or file.
"""

from __future__ import annotations

import math
import os
import re
from collections import namedtuple
from collections.abc import Collection, Mapping, Sequence

from .cpus import cpu_count, cpu_quota
from .listing import InputDirError, compile_pattern


DEFAULT_PROCESSOR = "job.tokens:TokenSplitter"
RUN_TYPES = ("", "auto", "local")
SHARD_STRATEGIES = ("contiguous", "size")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DISTRIB_KEYS = ("local_rank", "global_rank", "world_size", "node_count", "local_size", "node_rank")


class ConfigError(ValueError):
    """A config that cannot be used: the message names the key or file."""


def usable_cpus() -> int:
    """CPUs this process may keep busy: its affinity mask, capped by a cgroup CPU quota.

    Under a launcher the mask is the node's CPUs again by the time workers
    start (:func:`job.cpus.widen_affinity`).
    """
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
    return cpu_count(affinity, cpu_quota())


def _as_given(name: str, value: object) -> object:
    return value


class Key(namedtuple("Key", "name kind default help check required",
                     defaults=(_as_given, False))):
    """One configuration key: its ``name``, ``kind`` (the type ``--help`` names), ``default``,
    meaning (``help``), and checker: ``check(name, value)`` returns the value to use or
    raises :class:`ConfigError`. A ``required`` key has no default for :class:`JobConfig`,
    which refuses to be made without it; its ``default`` (``None``) is what ``--help`` shows
    and what :func:`build` checks while the key is not given.
    """

    __slots__ = ()


def _int(minimum: int | None = None, allow_none: bool = False):
    def check(name: str, value: object) -> object:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value
    return check


#: A number as YAML 1.2 writes it (``1e12``), which YAML 1.1 (PyYAML) reads as text.
_DECIMAL = re.compile(r"\+?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number(allow_none: bool = True):
    def check(name: str, value: object) -> object:
        if value is None and allow_none:
            return None
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            value = float(value)
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
                or not math.isfinite(value)):
            allowed = " or null" if allow_none else ""
            raise ConfigError(f"{name} must be a positive number of seconds{allowed}, got {value!r}")
        return float(value)
    return check


def _text(choices: Sequence[str] | None = None, allow_none: bool = False, upper: bool = False,
          path: bool = False):
    def check(name: str, value: object) -> object:
        if value is None and allow_none:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be text, got {value!r}")
        if "\0" in value:  # os functions would raise ValueError: embedded null byte
            raise ConfigError(f"{name} holds a NUL byte, which no path can hold")
        if path and not value.strip():
            raise ConfigError(f"{name} is empty: give a folder path")
        if upper:
            value = value.upper()
        if choices is not None and value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
                              f"got {value!r}")
        return value
    return check


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _processor(name: str, value: object) -> str:
    value = _text()(name, value)
    module, _, cls = value.partition(":")
    if not module or not cls:
        raise ConfigError(f"{name} must be 'module:Class', got {value!r}")
    return value


def _pattern(name: str, value: object) -> str | None:
    value = _text(allow_none=True)(name, value)
    if value is not None:
        try:
            compile_pattern(value)
        except InputDirError as error:
            raise ConfigError(str(error)) from None
    return value


def _distrib(name: str, value: object) -> dict | None:
    """``distribArgs``; an empty mapping is none given (the rank then comes from the launcher,
    as ``DistributedPreprocessArguments()`` means in the seed's API)."""
    if value is None or (isinstance(value, Mapping) and not value):
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping of {', '.join(DISTRIB_KEYS)}; got {value!r}")
    unknown = sorted(set(map(str, value)) - set(DISTRIB_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {name}.{unknown[0]}; {name} takes {', '.join(DISTRIB_KEYS)}")
    result = {}
    for key, item in value.items():
        allow_none = key == "node_rank"
        result[key] = _int(0, allow_none=allow_none)(f"{name}.{key}", item)
    return result


#: Every config key, declared once, in order: :class:`JobConfig`'s attributes, the command
#: line, ``--help`` and the README's table derive from it.
SCHEMA: tuple[Key, ...] = (
    Key("input_dir", "text", None, "folder of input files (required)",
        _text(allow_none=True, path=True), required=True),
    Key("out_dir", "text", "out", "where outputs go (created; input_dir may not be inside it)",
        _text(path=True)),
    Key("process_count", "integer", None,
        "worker processes on this rank (null: the usable CPUs, shared by the ranks of a node)",
        _int(1, allow_none=True)),
    Key("run_type", "text", "", "'' or 'auto': ranks from distribArgs or launcher variables; "
        "'local': one rank, ignore launcher variables", _text(RUN_TYPES)),
    Key("distribArgs", "mapping", None, "selective node: node_count, node_rank, local_size, "
        "local_rank, global_rank, world_size (null: from the launcher)", _distrib),
    Key("processor", "text", DEFAULT_PROCESSOR, "'module:Class', a DataProcessor subclass "
        "built as Class(input_dir, out_dir, distrib_args)", _processor),
    Key("shard_strategy", "text", "contiguous", "'contiguous' (blocks of the sorted list) or "
        "'size' (balance total bytes)", _text(SHARD_STRATEGIES)),
    Key("pattern", "text", None, "glob on paths relative to input_dir: '*.txt' in any folder, "
        "'a/**/*.txt' ('**/' is zero or more folders) (null: every file)", _pattern),
    Key("resume", "boolean", True, "skip files an earlier run finished, inputs unchanged",
        _bool),
    Key("error_threshold", "integer", 0, "failed files tolerated before exit 1 (-1: any "
        "number)", _int(-1)),
    Key("max_retries", "integer", 1, "extra attempts per file after a failure", _int(0)),
    Key("file_timeout", "seconds", None, "seconds one file may take (null: no limit)",
        _number()),
    Key("log_level", "text", "INFO", "DEBUG, INFO, WARNING or ERROR",
        _text(LOG_LEVELS, upper=True)),
    Key("progress_interval", "seconds", 30.0, "seconds between progress lines when stderr is "
        "not a terminal (a bar when it is)", _number(allow_none=False)),
    Key("journal_sync_interval", "seconds", 10.0, "seconds a finished file's journal record "
        "may wait before it is forced to storage (fsync, and a close that uploads it on a blob "
        "mount): what a preempted node loses", _number(allow_none=False)),
)
KEYS = {key.name: key for key in SCHEMA}


class JobConfig:
    """The validated configuration of one run: one attribute per key of :data:`SCHEMA`
    (``config.input_dir``, ``config.process_count``...), made by :func:`build`, which checks
    each value. It is not changed once made: assigning an attribute raises
    :class:`AttributeError`.
    """

    def __init__(self, **values: object) -> None:
        """Each key's value by name, taken as given; a key left out takes its default. A name
        that is no key, or a required key left out, is a :class:`TypeError`."""
        for name in values:
            if name not in KEYS:
                raise TypeError(f"JobConfig.__init__() got an unexpected keyword argument {name!r}")
        for key in SCHEMA:
            if key.required and key.name not in values:
                raise TypeError(f"JobConfig.__init__() missing 1 required keyword argument: "
                                f"{key.name!r}")
            object.__setattr__(self, key.name, values.get(key.name, key.default))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to {name!r}: a JobConfig is not changed once made")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete {name!r}: a JobConfig is not changed once made")

    def __repr__(self) -> str:
        return "JobConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"

    def __eq__(self, other: object) -> bool:
        if type(other) is not JobConfig:
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:  # as a frozen record's: a TypeError while distribArgs is set
        return hash(tuple(self.as_dict().values()))

    def workers(self, ranks_on_this_node: int = 1) -> int:
        """Worker processes to start: ``process_count``, or this rank's share of the usable CPUs.

        With ``process_count: null`` the ranks on one node split its CPUs between them
        (at least one worker each), so that 4 ranks on a 16-CPU node start 4 workers each.
        """
        if self.process_count is not None:
            return self.process_count
        return max(1, usable_cpus() // max(1, ranks_on_this_node))

    def as_dict(self) -> dict[str, object]:
        """Every key and its value, in the order of :data:`SCHEMA`."""
        return {key.name: getattr(self, key.name) for key in SCHEMA}


def load_yaml(path: str | os.PathLike, what: str = "config file") -> dict[str, object]:
    """The mapping in the YAML file ``path``; an empty file is an empty mapping.

    Any problem is a :class:`ConfigError` naming ``what`` and the file.
    """
    import yaml  # here: a run configured on the command line alone does not need it
    name = f"{what} {str(path)!r}"
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigError(f"{name} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{name} is a folder") from None
    except OSError as error:
        raise ConfigError(f"{name} cannot be read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name} is not UTF-8 text") from None
    except ValueError:  # open(): embedded null byte
        raise ConfigError(f"{name}: the path holds a NUL byte, which no path can hold") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "malformed YAML"
        raise ConfigError(f"{name} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name} must hold a mapping of keys, got {type(data).__name__}")
    return data


#: Decimal integers as YAML 1.1 reads them: ASCII digits, no leading zero (octal), no ``_``.
_PLAIN_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
#: The booleans and nulls of YAML 1.1 (PyYAML's resolver), each in its three spellings.
_PLAIN_WORDS = {spelling: value for word, value in
                [("true", True), ("yes", True), ("on", True), ("false", False), ("no", False),
                 ("off", False), ("null", None)]
                for spelling in (word, word.capitalize(), word.upper())} | {"~": None}


def parse_scalar(key: str, text: str) -> object:
    """A command-line value read as a YAML scalar; text keys keep the raw string."""
    kind = KEYS[key].kind if key in KEYS else "integer"
    if kind == "text" and text not in ("null", "~"):
        return text
    if text in _PLAIN_WORDS:  # what YAML reads, without importing it (20 ms of every start)
        return _PLAIN_WORDS[text]
    if len(text) <= 18 and _PLAIN_DECIMAL.fullmatch(text):
        return int(text)
    import yaml  # here: imported when first needed (20 ms), as load_yaml does
    try:
        return yaml.safe_load(text) if text != "" else ""
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of over 4,300 digits
        return text


def check_key(dotted: str) -> None:
    """:class:`ConfigError` naming ``dotted`` unless it is a key or ``distribArgs.KEY``."""
    section, _, key = dotted.partition(".")
    if section not in KEYS:
        raise ConfigError(f"unknown key {dotted!r}; see --help for the keys")
    if key and (section != "distribArgs" or "." in key):
        raise ConfigError(f"unknown key {dotted!r}: only distribArgs has sub-keys")
    if key and key not in DISTRIB_KEYS:
        raise ConfigError(f"unknown key {dotted!r}; distribArgs takes {', '.join(DISTRIB_KEYS)}")


def apply_overrides(values: dict[str, object], overrides: Sequence[tuple[str, str]],
                    other_keys: Collection[str] = ()) -> dict[str, object]:
    """Apply ``(dotted_key, raw_value)`` pairs to a copy of ``values``.

    ``distribArgs.node_rank`` sets one key of the ``distribArgs`` section,
    creating the section if needed. ``other_keys`` are keys that are not the
    job's (a processor's own, for :class:`job.api.CustomArgParser`): one is
    replaced, or one key of it set when it is a mapping.
    """
    result = dict(values)
    for dotted, raw in overrides:
        section, _, key = dotted.partition(".")
        if section in other_keys and (not key or isinstance(result.get(section), Mapping)):
            result[section] = (parse_scalar(section, raw) if not key
                               else {**result[section], key: parse_scalar(key, raw)})
            continue
        check_key(dotted)
        if not key:
            result[section] = parse_scalar(section, raw)
            continue
        current = result.get(section)
        merged = dict(current) if isinstance(current, Mapping) else {}
        merged[key] = parse_scalar(key, raw)
        result[section] = merged
    return result


class CommandLine:
    """A parsed command line: the config file, the ``(key, value)`` overrides and the flags."""

    def __init__(self) -> None:
        self.config_path: str | None = None
        self.overrides: list[tuple[str, str]] = []
        self.help = False
        self.print_config = False


def _spellings(name: str) -> list[str]:
    """``--key_name`` and ``--key-name`` (the same key)."""
    return list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"]))


def _value_keys(other_keys: Sequence[str] = ()) -> list[str]:
    """The keys given as ``--KEY VALUE``: every key, ``distribArgs.KEY``, and ``other_keys``."""
    names = [key.name for key in SCHEMA] + [f"distribArgs.{key}" for key in DISTRIB_KEYS]
    return names + [name for name in other_keys if name not in names]


def _options(other_keys: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Every spelling of every option -> ``(kind, name)``: kind ``flag`` (``help``,
    ``print_config``), ``config`` or ``key``; ``name`` is the first spelling's."""
    options = {"-h": ("flag", "help")}
    for kind, names in (("flag", ["help", "print_config"]), ("key", _value_keys(other_keys)),
                        ("config", ["config"])):
        for name in names:
            options.update(dict.fromkeys(_spellings(name), (kind, name)))
    options.update(dict.fromkeys(_spellings("config_path"), ("config", "config")))
    return options


def parse_command_line(argv: Sequence[str], other_keys: Sequence[str] = (),
                       strict: bool = True) -> CommandLine:
    """Split ``argv`` into the config path, ``(key, value)`` overrides and flags.

    ``--KEY VALUE`` and ``--KEY=VALUE`` for every key (``_`` or ``-`` in its
    name), the value being the next argument even when it begins with ``-``;
    ``--config PATH``; ``--help`` (``-h``) and ``--print_config``; no
    abbreviations; ``--`` ends the options. Any problem is a one-line
    :class:`ConfigError`; with ``strict=False`` options that are not keys are
    left out instead (to find the config file first). Written out rather than
    with argparse, which costs every run 8 ms (its import, and its gettext).
    """
    options = _options(other_keys)
    parsed = CommandLine()
    extra: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            extra += [arg, *args]
            break
        flag, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        kind, name = options.get(flag, (None, None))
        if kind is None:
            extra.append(arg)
            continue
        shown = "--" + name
        if kind == "flag":
            if equals:
                raise ConfigError(f"{shown}: ignored explicit argument {value!r}")
            setattr(parsed, name, True)
            continue
        if not equals:
            if not args:
                raise ConfigError(f"{shown} needs a value")
            value = args.pop(0)
        if kind == "config":
            parsed.config_path = value
        else:
            parsed.overrides.append((name, value))
    if extra and strict:
        if not extra[0].startswith("--") or extra[0] == "--":
            raise ConfigError(f"unexpected argument {extra[0]!r}: options are --KEY VALUE; "
                              "see --help")
        check_key(extra[0][2:].partition("=")[0].replace("-", "_"))
        raise ConfigError(f"unexpected argument {extra[0]!r}; see --help")
    return parsed


def build(values: Mapping[str, object], require_input_dir: bool = True) -> JobConfig:
    """Validate a mapping of keys into a :class:`JobConfig`."""
    unknown = [str(k) for k in values if k not in KEYS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; see --help for the keys")
    checked = {}
    for key in SCHEMA:
        value = values.get(key.name, key.default)
        checked[key.name] = key.check(key.name, value)
    if checked["input_dir"] is None and require_input_dir:
        raise ConfigError("input_dir is not set: give it in the config file or as --input_dir PATH")
    return JobConfig(**checked)


def load(config_path: str | os.PathLike | None = None,
         overrides: Sequence[tuple[str, str]] = (), **values: object) -> JobConfig:
    """Defaults < ``config_path`` < ``values`` < ``overrides``, validated."""
    data = load_yaml(config_path) if config_path is not None else {}
    data.update(values)
    return build(apply_overrides(data, overrides))


def _shown(value: object) -> str:
    """A default as it is written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return "''" if value == "" else str(value)


def help_text() -> str:
    """Every key with its type, default and meaning, for ``--help`` and the README."""
    lines = []
    for key in SCHEMA:
        lines.append(f"  --{key.name} ({key.kind}, default {_shown(key.default)})\n"
                     f"      {key.help}")
    return "\n".join(lines)


def markdown_table() -> str:
    """The config reference as the README shows it (a test keeps the two equal)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key in SCHEMA:
        rows.append(f"| `{key.name}` | {key.kind} | `{_shown(key.default)}` | {key.help} |")
    return "\n".join(rows)
