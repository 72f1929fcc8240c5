"""Survey summaries: codebooks (YAML), validated survey files, small-sample statistics, synthetic files.

Modules: ``codebook`` (typed codebooks), ``responses`` (reading and validation), ``stats`` (result
objects), ``summary`` (one result per question), ``charts``, ``synthetic`` (calibrated synthetic
files), ``study`` (the `equilibres surveys` runner). See docs/surveys.md.
"""
