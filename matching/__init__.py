"""Matching of ÉQUILIBRES patients to controls: estimator, diagnostics, unmatched profiles, study runner."""

from matching.matcher import Matcher

__all__ = ["Matcher"]
