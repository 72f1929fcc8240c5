"""Cleaning stages: one module per stage, each a set of named, cited rules and pure Ibis functions.

Order of the stages: ``ingest`` (beneficiaries, person map, roster) and ``ald``, then ``dcir`` and
``pmsi``, then ``deaths`` and ``outputs`` (persons, panel, stays), then ``cohort``. The runner
(``pipeline.runner``) does the I/O, the caching and the audit trail.
"""

from __future__ import annotations

import importlib

STAGE_MODULES = ["ingest", "ald", "dcir", "pmsi", "deaths", "outputs", "cohort"]


def all_rules() -> dict:
    """Every registered rule, keyed by (stage, name), after importing every stage module."""
    for name in STAGE_MODULES:
        importlib.import_module(f"pipeline.stages.{name}")
    from pipeline.stages.rules import REGISTRY

    return dict(REGISTRY)
