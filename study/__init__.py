"""Orchestration on top of the steps: the `equilibres` command line (:mod:`study.cli`), the run chain
(:mod:`study.chain`) and the sweep of matching specifications with their headline effects
(:mod:`study.sweep`, the one analysis that crosses matching and indicators)."""
