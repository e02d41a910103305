"""Shard a folder of files across ranks and process each shard with a pool of workers.

Run it as ``python -m job --config config.yaml`` on every node, or use the
seed's Python API exported here.
"""

from .api import CustomArgParser, DataInterface, DistributedPreprocessArguments
from .atomic import atomic_output
from .processor import DataProcessor, ProcessingFailed
from .tokens import TokenSplitter

__all__ = ["CustomArgParser", "DataInterface", "DataProcessor", "DistributedPreprocessArguments",
           "ProcessingFailed", "TokenSplitter", "atomic_output"]
