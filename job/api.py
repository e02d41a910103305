"""The seed's (PyMarlin's) Python API, kept working on top of this package.

    config = CustomArgParser(default_yamlfile="config_prod.yaml").parse()
    file_list = DataInterface().get_file_names(config["input_dir"])
    distrib = DistributedPreprocessArguments(**config["distribArgs"])
    out = MyProcessor(config["input_dir"], config["out_dir"], distrib).multi_process_data(
        file_list, process_count=config["process_count"])
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from . import config as config_module
from .config import ConfigError
from .listing import list_inputs
from .processor import SEED_DEFAULTS, DataProcessor, DistributedPreprocessArguments

__all__ = ["CustomArgParser", "DataInterface", "DistributedPreprocessArguments", "SEED_DEFAULTS"]


class DataInterface:
    """Lists input files the way every rank lists them, and runs processors (seed API)."""

    def __init__(self, distrib_args: DistributedPreprocessArguments | None = None):
        self.distrib_args = distrib_args

    def get_file_names(self, input_dir: str, out_dir: str | None = None,
                       pattern: str | None = None) -> list[str]:
        """``input_dir`` joined with each listed file's relative path, in listing order."""
        return [os.path.join(input_dir, f.rel) for f in list_inputs(input_dir, out_dir, pattern)]

    def process_data(self, data_processor: DataProcessor, *args) -> object:
        result = data_processor.process(*args)
        data_processor.analyze(result)
        return result

    def multi_process_data(self, data_processor: DataProcessor, *args,
                           process_count: int | str | None = 1) -> list:
        if data_processor.distrib_args is None:
            data_processor.distrib_args = self.distrib_args
        return data_processor.multi_process_data(*args, process_count=process_count)


class CustomArgParser:
    """The seed's config parser: a YAML file plus ``--key value`` / ``--section.key value``.

    The file is ``--config_path`` (or ``--config``), else ``default_yamlfile``.
    Keys of ``python -m job`` are checked and get their defaults; other keys of
    the file are kept as they are, so a processor can read its own settings.
    ``distribArgs`` is a mapping, empty when neither the file nor the command
    line gives it. On a bad file or key, :meth:`parse` prints one line and
    exits with code 2.
    """

    def __init__(self, yaml_file_arg_key: str = "config_path",
                 default_yamlfile: str = "config.yaml", log_level: str = "INFO"):
        self.yaml_file_arg_key = yaml_file_arg_key
        self.default_yamlfile = default_yamlfile
        self.log_level = log_level

    def parse(self, argv: Sequence[str] | None = None) -> dict[str, object]:
        argv = sys.argv[1:] if argv is None else argv
        flag = f"--{self.yaml_file_arg_key}"
        argv = ["--config" + a[len(flag):] if a == flag or a.startswith(flag + "=") else a
                for a in argv]
        try:
            found = config_module.parse_command_line(argv, strict=False).config_path
            data = config_module.load_yaml(found or self.default_yamlfile)
            own = [k for k in data if k not in config_module.KEYS]
            sections = {str(k) for k in own if isinstance(data[k], dict)}
            named = [a[2:].partition("=")[0].replace("-", "_") for a in argv if a.startswith("--")]
            options = [str(k) for k in own] + [name for name in named  # a key of a section
                                               if name.partition(".")[0] in sections]
            arguments = config_module.parse_command_line(argv, options)
            data.setdefault("log_level", self.log_level)
            data = config_module.apply_overrides(data, arguments.overrides, own)
            known = {k: v for k, v in data.items() if k in config_module.KEYS}
            checked = config_module.build(known, require_input_dir=False).as_dict()
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        if checked["distribArgs"] is None:
            checked["distribArgs"] = {}
        return {**checked, **{k: data[k] for k in own}}
