"""Shard a folder of files across ranks and process each shard with a pool of workers.

Run it as ``python -m job --config config.yaml`` on every node, or use the
seed's Python API exported here. The names below are imported when first used
(PEP 562), so that ``import job.config`` (as ``submit`` does) loads neither the
worker pool nor the token splitter's kernel.
"""

import importlib

#: Each public name, and the module that defines it.
_EXPORTS = {
    "CustomArgParser": "api",
    "DataInterface": "api",
    "DataProcessor": "processor",
    "DistributedPreprocessArguments": "processor",
    "ProcessingFailed": "processor",
    "TokenSplitter": "tokens",
    "atomic_output": "atomic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'job' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
