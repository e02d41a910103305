"""The reference runs each row is measured against, and the commands under test."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TR_EXACT = HERE / "tr_exact.sh"


def tr_command(input_dir: Path, out_dir: Path, parallel: int) -> list[str]:
    """``find | xargs -P N`` running ``tr_exact.sh`` (one tr pass per file) over every file.

    The output of each file is byte-exact to the SPEC (see ``tr_exact.sh``).
    Flat input folders only: outputs are named by the input's basename.
    """
    script = f'find "$1" -type f -print0 | xargs -0 -P{parallel} -n1 sh "$2" "$3"'
    return ["sh", "-c", script, "sh", str(input_dir), str(TR_EXACT), str(out_dir)]


def plain_tr_command(input_dir: Path, out_dir: Path, parallel: int) -> list[str]:
    """The plain reference: ``xargs -P N`` over the files with plain
    ``LC_ALL=C tr -s '[:space:]' '\\n'``. Cheaper than :func:`tr_command` (no end
    fixes), and not byte-exact: a leading newline, no newline after a last token."""
    one = 'LC_ALL=C tr -s "[:space:]" "\\n" < "$1" > "$2/${1##*/}"'
    script = f'find "$1" -type f -print0 | xargs -0 -P{parallel} -I{{}} sh -c \'{one}\' sh {{}} "$2"'
    return ["sh", "-c", script, "sh", str(input_dir), str(out_dir)]


def seed_command(input_dir: Path, out_dir: Path, processes: int) -> list[str]:
    """The seed's design: ``multiprocessing.Pool.starmap`` of read, split, write (seed.py)."""
    return [sys.executable, "-m", "benchmarks.seed", str(input_dir), str(out_dir), str(processes)]


def import_sdk_command() -> list[str]:
    """A bare ``python -c "import azure.ai.ml"``: the floor for ``python -m submit``."""
    return [sys.executable, "-c", "import azure.ai.ml"]


def optimum_busiest(sizes: list[int], shards: int) -> float:
    """No assignment of whole files to ``shards`` ranks can make the busiest hold less."""
    return max(sum(sizes) / shards, max(sizes, default=0))


def job_command(input_dir: Path, out_dir: Path, processes: int,
                pure_python: bool = False) -> list[str]:
    """What is measured: ``python -m job`` on one rank, fresh output, no resume.

    ``pure_python`` turns the compiled kernel off (``AMLSHARD_NATIVE=0``).
    """
    return [*(["env", "AMLSHARD_NATIVE=0"] if pure_python else []), sys.executable, "-m", "job", "--input_dir", str(input_dir), "--out_dir", str(out_dir),
            "--process_count", str(processes), "--log_level", "WARNING", "--resume", "false"]


def submit_command(yaml_path: Path) -> list[str]:
    """What is measured: the dry run of a 5-node submission."""
    return [sys.executable, "-m", "submit", "--nodes", "5", "--dry-run", "--yaml", str(yaml_path)]
