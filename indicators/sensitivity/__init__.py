"""`equilibres sensitivity`: how far the headline effects can be trusted (issue 14).

One entry, :func:`run` (the step signature), in :mod:`indicators.sensitivity.step`; the analyses are
pure functions in the sibling modules (E-values, Rosenbaum bounds, power, event study, competing
risks, generalisability, two-part model, negative controls, verdict). docs/indicators.md, section
"Sensitivity analyses".
"""

from __future__ import annotations

from indicators.sensitivity.step import SensitivityResult, run

__all__ = ["SensitivityResult", "run"]
