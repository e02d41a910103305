"""The settings of a submission and where each one came from.

Precedence, highest first (the first that gives a value wins):

1. flags (``--subscription``, ``--resource-group``, ``--workspace``, ``--compute``,
   ``--input``, ``--output``, ...) or the notebook's filled-in values;
2. environment variables: ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP``,
   ``AZUREML_WORKSPACE_NAME``, ``AZUREML_COMPUTE``;
3. a workspace ``config.json`` (``subscription_id``, ``resource_group``,
   ``workspace_name``, or ``Scope``), found as ``MLClient.from_config`` finds it;
4. the submit config file (``submit/config.yaml``, or ``--config FILE`` laid over it).

Values in ``<ANGLE_BRACKETS>`` are placeholders: a dry run accepts them, a
submission refuses them (:func:`unfilled`). This module reads files and the
environment only; it imports nothing from Azure.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from job.config import ConfigError, load_yaml

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PACKAGE_DIR / "config.yaml"
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
DISTRIBUTIONS = ("mpi", "pytorch", "none")

# MLClient.from_config's search: each (folder, file) pair in this order, from the
# current folder up through its parents (20 levels), the first file found wins.
WORKSPACE_CONFIG_FOLDERS = (".azureml", "aml_config", None)
WORKSPACE_CONFIG_FILES = ("config.json", "project.json")
WORKSPACE_CONFIG_LEVELS = 20


class SettingsError(ValueError):
    """A setting that cannot be used; the message is one line naming it and its source."""


def is_placeholder(value: Any) -> bool:
    """True for text that still holds a ``<PLACEHOLDER>``."""
    return isinstance(value, str) and PLACEHOLDER.search(value) is not None


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{name} must be non-empty text, got {value!r}")
    return value.strip()


def _optional_text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _text(name, value)


def _count(minimum: int, allow_none: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and allow_none:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{name} must be an integer, got {value!r}")
        if value < minimum:
            raise SettingsError(f"{name} must be >= {minimum}, got {value}")
        return value
    return check


# The storage locations Azure ML binds as a uri_folder, each a pattern and how --help spells it.
_ACCOUNT = r"[a-z0-9]+"
_SEGMENT = r"[^/@\s]+"
STORAGE_FORMS: tuple[tuple[str, str], ...] = (
    (rf"azureml://datastores/{_SEGMENT}/paths/\S*", "azureml://datastores/NAME/paths/PATH"),
    (rf"azureml://subscriptions/{_SEGMENT}/resourcegroups/{_SEGMENT}"
     rf"/(providers/Microsoft\.MachineLearningServices/)?workspaces/{_SEGMENT}"
     rf"/datastores/{_SEGMENT}/paths/\S*",
     "azureml://subscriptions/SUB/resourcegroups/RG/workspaces/WS/datastores/NAME/paths/PATH"),
    (rf"https://{_ACCOUNT}\.blob\.core\.[a-z0-9.]+/{_SEGMENT}(/\S*)?",
     "https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH"),
    (rf"wasbs://{_SEGMENT}@{_ACCOUNT}\.blob\.core\.[a-z0-9.]+(/\S*)?",
     "wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH"),
    (rf"abfss://{_SEGMENT}@{_ACCOUNT}\.dfs\.core\.[a-z0-9.]+(/\S*)?",
     "abfss://FS@ACCOUNT.dfs.core.windows.net/PATH"),
)
DATASTORE_FORMS = STORAGE_FORMS[:2]  # what a job output may be: a path on a datastore
_ASSET_NAME = r"[A-Za-z0-9_<][A-Za-z0-9_.<>-]*"
ASSET_FORMS: tuple[tuple[str, str], ...] = (
    (rf"azureml:{_ASSET_NAME}:[A-Za-z0-9_.<>-]+", "azureml:NAME:VERSION"),
    (rf"azureml:{_ASSET_NAME}@latest", "azureml:NAME@latest"),
)


def is_local_path(location: str) -> bool:
    """True for a local folder; False for a storage URI (``...://...``) or ``azureml:`` asset."""
    return "://" not in location and not location.startswith("azureml:")


def _matches(location: str, forms: tuple[tuple[str, str], ...]) -> bool:
    return any(re.fullmatch(pattern, location, flags=re.IGNORECASE) for pattern, _ in forms)


def _input(name: str, value: Any) -> str:
    """An input folder: a storage URI, a registered data asset or a local folder (see --help)."""
    value = _text(name, value)
    if is_local_path(value) or _matches(value, STORAGE_FORMS + ASSET_FORMS):
        return value
    accepted = ", ".join(form for _, form in STORAGE_FORMS + ASSET_FORMS)
    raise SettingsError(f"{name} {value!r} is not a location Azure ML reads; use {accepted} "
                        "or a local folder")


def _output(name: str, value: Any) -> str | None:
    """An output folder: a datastore path, or '' / null for the job's default output."""
    value = _optional_text(name, value)
    if value is None or _matches(value, DATASTORE_FORMS):
        return value
    accepted = " or ".join(form for _, form in DATASTORE_FORMS)
    raise SettingsError(f"{name} {value!r} is not a datastore path Azure ML writes job outputs "
                        f"to; use {accepted} (register other storage as a datastore), or '' "
                        "for the job's default output")


def _choice(*choices: str | None) -> Callable[[str, Any], Any]:
    """A checker taking one of ``choices`` in any case, and giving it as spelled here."""
    by_lower = {c.lower(): c for c in choices if c is not None}

    def check(name: str, value: Any) -> Any:
        if value is None and None in choices:
            return None
        text = _text(name, value)
        if text.lower() not in by_lower:
            raise SettingsError(f"{name} must be one of {', '.join(by_lower.values())}; "
                                f"got {text!r}")
        return by_lower[text.lower()]
    return check


_distribution = _choice(*DISTRIBUTIONS)
ENVIRONMENT_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _pairs(what: str, name_pattern: re.Pattern | None = None) -> Callable[[str, Any], Any]:
    """A checker of ``NAME=VALUE`` pairs: a mapping (a config file) or ``K=V`` texts (flags)."""
    def check(name: str, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if isinstance(value, (list, tuple)):
            pairs = {}
            for item in value:
                key, equals, text = str(item).partition("=")
                if not equals or not key.strip():
                    raise SettingsError(f"{name} takes {what}=VALUE; got {item!r}")
                pairs[key.strip()] = text
            value = pairs
        if not isinstance(value, Mapping):
            raise SettingsError(f"{name} must be a mapping of {what} to values, got {value!r}")
        checked = {}
        for key, text in value.items():
            key = str(key).strip()
            if not key or (name_pattern is not None and not name_pattern.fullmatch(key)):
                raise SettingsError(f"{name}: {key!r} is not a valid {what}")
            if text is None or isinstance(text, (dict, list)):
                raise SettingsError(f"{name}: {key} must have a text value, got {text!r}")
            checked[key] = str(text).lower() if isinstance(text, bool) else str(text)
        return checked
    return check


BUILT_ENVIRONMENTS = ("conda", "docker")  # built from environment/
REGISTERED_ENVIRONMENT_FORMS: tuple[tuple[str, str], ...] = (
    (rf"(azureml:)?{_ASSET_NAME}:[A-Za-z0-9_.<>-]+", "azureml:NAME:VERSION"),
    (rf"(azureml:)?{_ASSET_NAME}@latest", "azureml:NAME@latest"),
    (rf"azureml://registries/{_SEGMENT}/environments/{_SEGMENT}"
     rf"/(versions/{_SEGMENT}|labels/latest)",
     "azureml://registries/REGISTRY/environments/NAME/versions/VERSION"),
)


def _environment(name: str, value: Any) -> str:
    """``conda`` or ``docker`` (any case), or a registered environment; else one line naming all."""
    value = _text(name, value)
    if value.lower() in BUILT_ENVIRONMENTS:
        return value.lower()
    if _matches(value, REGISTERED_ENVIRONMENT_FORMS):
        return value
    forms = ", ".join(form for _, form in REGISTERED_ENVIRONMENT_FORMS)
    raise SettingsError(f"{name} {value!r} is neither {' nor '.join(BUILT_ENVIRONMENTS)} nor a "
                        f"registered environment ({forms})")


@dataclass(frozen=True)
class Key:
    """One setting: its name, checker, meaning, and where it comes from.

    ``help`` and ``metavar`` make its flag's ``--help`` line and ``group`` its
    section; ``flag_name`` is the flag's name when it is not the setting's
    (``--tag`` for ``tags``). A ``merge`` setting is a mapping: its flag repeats
    (``--tag k=v --tag k2=v2``) and each source adds entries to the one below.
    ``count`` settings are read as integers by the parser already.
    """

    name: str
    check: Callable[[str, Any], Any]
    help: str
    env: str | None = None
    config_json: str | None = None
    in_file: bool = True  # may the submit config file set it?
    group: str = "job"
    metavar: str = "VALUE"
    flag_name: str | None = None
    merge: bool = False
    count: bool = False

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name).replace("_", "-")


SHAPE, WHERE, JOB = "job shape", "workspace and data", "job"
IDENTITIES = ("user", "managed", None)
JOB_TIERS = ("Spot", "Basic", "Standard", "Premium", None)
PRIORITIES = ("Low", "Medium", "High", None)

KEYS: tuple[Key, ...] = (
    Key("subscription", _text, "Azure subscription ID", "AZURE_SUBSCRIPTION_ID",
        "subscription_id", group=WHERE, metavar="ID"),
    Key("resource_group", _text, "resource group of the workspace", "AZURE_RESOURCE_GROUP",
        "resource_group", group=WHERE, metavar="NAME"),
    Key("workspace", _text, "Azure ML workspace name", "AZUREML_WORKSPACE_NAME",
        "workspace_name", group=WHERE, metavar="NAME"),
    Key("compute", _optional_text, "compute cluster that runs the job ('': serverless compute)",
        "AZUREML_COMPUTE", group=WHERE, metavar="NAME"),
    Key("instance_type", _optional_text, "serverless compute: the VM size of each node "
        "(e.g. Standard_D4s_v3), with no --compute", group=WHERE, metavar="SIZE"),
    Key("input", _input, "input folder: azureml://datastores/NAME/paths/PATH (or the full "
        "azureml://subscriptions/... form), https://, wasbs:// or abfss:// storage, a data asset "
        "azureml:NAME:VERSION or azureml:NAME@latest, or a local folder (uploaded to the "
        "datastore workspaceblobstore when submitted; the dry run shows each node's files)",
        group=WHERE, metavar="URI|ASSET|DIR"),
    Key("output", _output, "output folder: azureml://datastores/NAME/paths/PATH (or the full "
        "azureml://subscriptions/... form); '' = the job's default output", group=WHERE,
        metavar="URI"),
    Key("experiment", _text, "experiment name (default amlshard)", metavar="NAME"),
    Key("nodes", _count(1), "nodes of the job (instance_count); default 1", group=SHAPE,
        metavar="N", count=True),
    Key("processes_per_node", _count(1), "ranks per node: the launcher's process count per "
        "instance (default 1)", group=SHAPE, metavar="N", count=True),
    Key("process_count", _count(1, allow_none=True), "worker processes of each rank, passed to "
        "the job as --process_count (default: one per CPU of the node)", group=SHAPE,
        metavar="N", count=True),
    Key("distribution", _distribution, "launcher starting the ranks: mpi (default), pytorch, "
        "none", group=SHAPE, metavar="{mpi,pytorch,none}"),
    Key("environment", _environment, "conda (default: image + conda file of environment/), "
        "docker (environment/Dockerfile), or a registered environment azureml:NAME:VERSION or "
        "azureml:NAME@latest", metavar="ENV"),
    Key("job_config", _text, "config of `python -m job` run on the nodes (default "
        "submit/job_config.yaml)", metavar="FILE"),
    Key("node_count", _count(1, allow_none=True), "selective node: the node count of the run to "
        "emulate (with --node-rank)", in_file=False, group=SHAPE, metavar="N", count=True),
    Key("node_rank", _count(0, allow_none=True), "selective node: the node of that run to "
        "process, 0-based", in_file=False, group=SHAPE, metavar="R", count=True),
    Key("display_name", _optional_text, "the job's name in the studio list (default: amlshard, "
        "the input's name, the nodes and the time, e.g. 'amlshard corpus x5 1432')",
        metavar="TEXT"),
    Key("description", _optional_text, "the job's description", metavar="TEXT"),
    Key("tags", _pairs("tag name"), "a job tag, repeatable; laid over the default tags input, "
        "output, nodes, processes_per_node and git_commit (the checkout's commit)",
        flag_name="tag", metavar="K=V", merge=True),
    Key("environment_variables", _pairs("variable name", ENVIRONMENT_VARIABLE),
        "a variable of the job's environment, repeatable; laid over "
        "OMPI_MCA_hwloc_base_binding_policy=none and PRTE_MCA_hwloc_default_binding_policy=none",
        flag_name="env", metavar="K=V", merge=True),
    Key("timeout", _count(1, allow_none=True), "cancel the job after this many seconds "
        "(limits.timeout)", metavar="SECONDS", count=True),
    Key("identity", _choice(*IDENTITIES), "identity the job uses for data: user (the "
        "submitter's) or managed (the compute's); default: Azure ML's choice",
        metavar="{user,managed}"),
    Key("job_tier", _choice(*JOB_TIERS), "serverless queue tier (queue_settings.job_tier)",
        metavar="{Spot,Basic,Standard,Premium}"),
    Key("priority", _choice(*PRIORITIES), "priority in the queue (queue_settings.priority)",
        metavar="{Low,Medium,High}"),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}
WORKSPACE_KEYS = ("subscription", "resource_group", "workspace")
PATH_KEYS = ("job_config",)


@dataclass(frozen=True)
class Settings:
    """Resolved values (``values[name]``), the source that gave each, and warnings to show."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    warnings: tuple[str, ...] = ()  # one line each, e.g. a config.json that was skipped

    def __getattr__(self, name: str) -> Any:
        if name in ("values", "sources", "warnings"):
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, source: str, **values: Any) -> "Settings":
        """These settings with ``values`` (by setting name) given by ``source``.

        Each value is checked as :func:`resolve` checks it; unlike an override there,
        a placeholder is kept: ``settings.replace("layout", output=settings.output +
        "5-nodes/")`` is still a placeholder, and shows as one, in a dry run.
        """
        unknown = [name for name in values if name not in KEYS_BY_NAME]
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]!r}")
        checked, sources = dict(self.values), dict(self.sources)
        for name, value in values.items():
            checked[name] = KEYS_BY_NAME[name].check(name, value)
            sources[name] = source
        _serverless(checked, sources)
        return Settings(checked, sources, self.warnings)

    def describe(self) -> str:
        """One line per setting: name, value and source, placeholders marked."""
        width = max(len(key.name) for key in KEYS)
        lines = []
        for key in KEYS:
            value, source = self.values[key.name], self.sources[key.name]
            if (value is None and not key.in_file) or (key.merge and not value):
                continue
            shown = ("null" if value is None else
                     " ".join(f"{k}={v}" for k, v in value.items()) if key.merge else str(value))
            mark = "   <- placeholder" if is_placeholder(value) else ""
            lines.append(f"  {key.name:<{width}}  {shown}  ({source}){mark}")
        return "\n".join(lines)


def workspace_config_candidates(start: str | os.PathLike | None = None) -> Iterator[Path]:
    """The files ``MLClient.from_config`` would consider, searching from ``start``, in its order.

    For each folder in ``.azureml``, ``aml_config``, the folder itself and each
    file name in ``config.json``, ``project.json`` (in that order), walk up from
    ``start`` (default: the current folder) through 20 parents. The SDK takes
    the first; :func:`resolve` skips those that are not workspace configs.
    """
    origin = Path(start) if start is not None else Path(".")
    if origin.is_file():
        yield origin
        return
    root = os.path.realpath(os.sep)
    for folder, name in product(WORKSPACE_CONFIG_FOLDERS, WORKSPACE_CONFIG_FILES):
        relative = os.path.join(folder, name) if folder else name
        current, level = str(origin), 0
        while True:
            candidate = os.path.join(current, relative)
            if os.path.isfile(candidate):
                yield Path(candidate)
            if current == root or level == WORKSPACE_CONFIG_LEVELS:
                break
            current = os.path.realpath(os.path.join(current, os.pardir))
            level += 1


def find_workspace_config(start: str | os.PathLike | None = None) -> Path | None:
    """The file ``MLClient.from_config`` would use (the first candidate), or ``None``."""
    return next(workspace_config_candidates(start), None)


class NotAWorkspaceConfig(SettingsError):
    """A config.json that holds no workspace at all (e.g. an editor's settings)."""


def read_workspace_config(path: str | os.PathLike) -> dict[str, str]:
    """What a workspace config.json gives of ``subscription``, ``resource_group``, ``workspace``.

    Raises :class:`NotAWorkspaceConfig` for a file that is not JSON, not an
    object, or names none of ``subscription_id``, ``resource_group``,
    ``workspace_name`` and ``Scope``; :class:`SettingsError` for an unreadable
    file or a ``Scope`` that is not a workspace ID. A file naming only some of
    the values gives those (:func:`resolve` says which are missing, if needed).
    """
    shown = repr(str(path))
    try:
        with open(path, encoding="utf-8-sig") as stream:
            data = json.load(stream)
    except OSError as error:
        raise SettingsError(f"workspace config {shown} cannot be read: {error.strerror}") from None
    except ValueError as error:
        raise NotAWorkspaceConfig(f"{shown} is not a workspace config: not valid JSON "
                                  f"({error})") from None
    names = {KEYS_BY_NAME[k].config_json: k for k in WORKSPACE_KEYS}
    if not isinstance(data, dict) or not any(data.get(n) for n in (*names, "Scope")):
        raise NotAWorkspaceConfig(f"{shown} is not a workspace config: it names none of "
                                  f"{', '.join(names)}, Scope")
    scope = data.get("Scope")
    if scope:
        pieces = str(scope).split("/")
        if len(pieces) < 9:
            raise SettingsError(f"workspace config {shown}: Scope {scope!r} is not a "
                                "workspace resource ID")
        return {"subscription": pieces[2], "resource_group": pieces[4], "workspace": pieces[8]}
    return {k: str(data[n]) for n, k in names.items() if data.get(n)}


def _workspace_from_config_json(values: dict[str, Any], sources: dict[str, str],
                                unset: list[str], search_from: str | os.PathLike | None,
                                warnings: list[str]) -> None:
    """Fill the ``unset`` workspace values from the first workspace config.json found.

    Files that are not workspace configs are skipped, each with a warning. A
    workspace config lacking some of the ``unset`` values gives those it has; the
    others stay as the config files below give them (placeholders, which a
    submission refuses, naming each).
    """
    for found in workspace_config_candidates(search_from):
        try:
            given = read_workspace_config(found)
        except NotAWorkspaceConfig as error:
            warnings.append(f"{error}; skipped it")
            continue
        for name in unset:
            if name not in given:
                continue
            values[name] = given[name]
            sources[name] = f"workspace config {_display(found.resolve())}"
        return


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a submit config file; unknown keys are an error naming the file."""
    try:
        data = load_yaml(path, what="submit config")
    except ConfigError as error:
        raise SettingsError(str(error)) from None
    allowed = [key.name for key in KEYS if key.in_file]
    unknown = [str(k) for k in data if k not in allowed]
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r} in {str(path)!r}; "
                            f"settings are {', '.join(allowed)}")
    return data


def _display(path: Path) -> str:
    """``path`` relative to the current folder when inside it, else absolute."""
    path, here = Path(path).resolve(), Path.cwd().resolve()
    return path.relative_to(here).as_posix() if here in path.parents else str(path)


def resolve(overrides: Mapping[str, Any] | None = None, *,
            environ: Mapping[str, str] | None = None,
            config_file: str | os.PathLike | None = None,
            search_from: str | os.PathLike | None = None,
            use_workspace_config: bool = True) -> Settings:
    """Resolve every setting: ``overrides`` > ``environ`` > workspace config.json > config files.

    ``overrides`` are flag values by setting name; ``None`` or a value still
    holding a placeholder counts as not given, so a notebook's unfilled cell
    falls through to the other sources. ``config_file`` is laid over the
    packaged ``submit/config.yaml``. The workspace config.json is searched from
    ``search_from`` (default: the current folder), and read only when flags or
    ``environ`` leave a workspace value unset; a file there that is not a workspace
    config is skipped with a line in ``Settings.warnings``. Relative ``job_config``
    paths are relative to the config file that gives them, or to the current
    folder when given as a flag. Raises :class:`SettingsError`.
    """
    overrides = dict(overrides or {})
    environ = os.environ if environ is None else environ
    unknown = [k for k in overrides if k not in KEYS_BY_NAME]
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}")

    layers: list[tuple[str, dict[str, Any], Path]] = []
    packaged = read_config_file(DEFAULT_CONFIG)
    layers.append((_display(DEFAULT_CONFIG), packaged, DEFAULT_CONFIG.parent))
    if config_file is not None:
        path = Path(config_file).resolve()
        layers.append((_display(path), read_config_file(path), path.parent))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        values[key.name], sources[key.name] = None, "default"
        for label, data, base in layers:
            if key.name in data:
                value = data[key.name]
                if key.name in PATH_KEYS and isinstance(value, str) and value:
                    value = str((base / value).resolve())
                _lay(key, values, sources, value, label)

    flagged = {k for k, v in overrides.items() if v is not None and not is_placeholder(v)}
    from_env = {k.name for k in KEYS if k.env and environ.get(k.env, "").strip()}
    unset = [name for name in WORKSPACE_KEYS if name not in flagged | from_env]
    warnings: list[str] = []
    if use_workspace_config and unset:
        _workspace_from_config_json(values, sources, unset, search_from, warnings)

    for key in KEYS:
        if key.env and environ.get(key.env, "").strip():
            values[key.name], sources[key.name] = environ[key.env].strip(), f"env {key.env}"

    for name, value in overrides.items():
        if name not in flagged:
            continue
        if name in PATH_KEYS and isinstance(value, (str, os.PathLike)):
            value = str(Path(value).resolve())
        _lay(KEYS_BY_NAME[name], values, sources, value, f"flag {KEYS_BY_NAME[name].flag}")

    checked = {}
    for key in KEYS:
        try:
            checked[key.name] = key.check(key.name, values[key.name])
        except SettingsError as error:
            raise SettingsError(f"{error} (from {sources[key.name]})") from None
    _serverless(checked, sources)
    return Settings(checked, sources, tuple(warnings))


def _lay(key: Key, values: dict[str, Any], sources: dict[str, str], value: Any,
         label: str) -> None:
    """Give ``key`` the ``value`` of source ``label``: it replaces an earlier value, or for a
    mapping (tags, environment variables) it is laid over the earlier one, entry by entry."""
    if key.merge and values[key.name] is not None:
        try:
            value = {**key.check(key.name, values[key.name]), **key.check(key.name, value)}
        except SettingsError as error:
            raise SettingsError(f"{error} (from {label})") from None
        label = f"{sources[key.name]} + {label}"
    values[key.name], sources[key.name] = value, label


def _serverless(values: dict[str, Any], sources: dict[str, str]) -> None:
    """An instance type means serverless compute: a compute placeholder is dropped; a
    compute cluster given with it is a :class:`SettingsError`."""
    if not values["instance_type"]:
        return
    if values["compute"] is None or is_placeholder(values["compute"]):
        values["compute"], sources["compute"] = None, "serverless (instance_type)"
        return
    raise SettingsError(f"instance_type {values['instance_type']!r} (from "
                        f"{sources['instance_type']}) runs on serverless compute, but compute "
                        f"{values['compute']!r} (from {sources['compute']}) is a cluster: give "
                        "one of them (--compute '' for serverless)")


def how_to_set(name: str, config_label: str = "submit/config.yaml", in_notebook: bool = False) -> str:
    """How a user gives setting ``name``: its flag (or notebook cell), variable, config.json, file."""
    key = KEYS_BY_NAME[name]
    ways = [f"fill {name.upper()} in the parameters cell" if in_notebook
            else f"pass {key.flag} VALUE"]
    if key.env:
        ways.append(f"export {key.env}=VALUE")
    if key.config_json:
        ways.append(f"put {key.config_json} in a workspace config.json")
    ways.append(f"or set {name} in {config_label}")
    return ", ".join(ways)


def unfilled(settings: Settings) -> list[str]:
    """Names of the settings that still hold a placeholder, in declaration order."""
    return [key.name for key in KEYS if is_placeholder(settings.values[key.name])
            or (isinstance(settings.values[key.name], Mapping)
                and any(map(is_placeholder, settings.values[key.name].values())))]


def unfilled_message(settings: Settings, in_notebook: bool = False) -> str:
    """The refusal for a submission with placeholders: a headline, then one line per value."""
    names = unfilled(settings)
    if in_notebook:
        lines = [f"{len(names)} setting(s) still hold placeholders; set each of them to submit:"]
    else:
        lines = [f"error: {len(names)} setting(s) still hold placeholders; nothing was sent to "
                 "Azure. Set each of them, or use --dry-run:"]
    return "\n".join(lines + placeholder_lines(settings, names, in_notebook))


def placeholder_lines(settings: Settings, names: Sequence[str],
                      in_notebook: bool = False) -> list[str]:
    """One line per setting of ``names``: its placeholder, where it came from, how to set it."""
    lines = []
    for name in names:
        source = settings.sources[name]
        label = source if source.endswith((".yaml", ".yml")) else "submit/config.yaml"
        lines.append(f"  {name} = {settings.values[name]} (from {source}): "
                     f"{how_to_set(name, label, in_notebook)}")
    return lines
