"""Synthetic SNDS-shaped extracts with planted truth (generator) and a small committed sample."""

from pathlib import Path

SAMPLE_DIR: Path = Path(__file__).parent / "sample"
"""The committed sample extract (Parquet, small scale, with truth.json); see docs/extract.md."""

__all__ = ["SAMPLE_DIR"]
