"""The propensity score of `matching.matcher.Matcher` (method='propensity'): a logistic model of the
treatment on standardised numeric and one-hot categorical covariates, its logit the distance variable.

Two models: ``penalised`` (scikit-learn's ``LogisticRegression``, L2 with C = 1, every level of a categorical
one-hot encoded) and ``glm`` (an unpenalised binomial GLM fitted by IRLS with statsmodels, the first level of
each categorical as reference — R's ``glm(family = binomial)``, MatchIt's ``distance = "glm"``). Standardising
numeric columns does not change the fitted scores of the unpenalised model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class PropensityDesign:
    """Propensity design matrix: standardised numeric columns + one-hot categorical columns."""

    def __init__(self, numeric, categorical, means, sds, levels, log_column, reference=False):
        self.numeric, self.categorical = numeric, categorical
        self.means, self.sds, self.levels, self.log_column = means, sds, levels, log_column
        self.reference = reference  # drop each categorical's first level (a model with an intercept column)

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[str], log_column: str | None,
            reference: bool = False) -> PropensityDesign:
        numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c]) and not
                   pd.api.types.is_bool_dtype(frame[c])]
        categorical = [c for c in columns if c not in numeric]
        means, sds = {}, {}
        for c in numeric:
            x = frame[c].to_numpy(dtype=float, na_value=np.nan)
            if c == log_column:
                x = np.log1p(x)
            finite = x[np.isfinite(x)]
            means[c] = float(finite.mean()) if len(finite) else 0.0
            sd = float(finite.std()) if len(finite) else 0.0
            sds[c] = sd if sd > 0 else 1.0
        levels = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}
        return cls(numeric, categorical, means, sds, levels, log_column, reference)

    def complete(self, frame: pd.DataFrame) -> np.ndarray:
        cols = self.numeric + self.categorical
        return frame[cols].notna().all(axis=1).to_numpy() if cols else np.ones(len(frame), bool)

    def transform(self, frame: pd.DataFrame):
        from scipy import sparse

        blocks = []
        for c in self.numeric:
            x = frame[c].to_numpy(dtype=float, na_value=np.nan)
            if c == self.log_column:
                x = np.log1p(x)
            blocks.append(sparse.csr_matrix(((x - self.means[c]) / self.sds[c])[:, None]))
        for c in self.categorical:
            cat = pd.Categorical(frame[c].astype(str), categories=self.levels[c])
            codes = cat.codes
            ok = codes >= 0
            m = sparse.csr_matrix(
                (np.ones(ok.sum()), (np.flatnonzero(ok), codes[ok])), shape=(len(frame), len(self.levels[c]))
            )
            blocks.append(m[:, 1:] if self.reference else m)
        if self.reference:
            blocks.insert(0, sparse.csr_matrix(np.ones((len(frame), 1))))
        return sparse.hstack(blocks, format="csr")

    def column_names(self) -> list[str]:
        """Names of the design columns, in order (``const`` first with ``reference``)."""
        cats = [f"{c}={v}" for c in self.categorical for v in self.levels[c][1 if self.reference else 0:]]
        return [*(["const"] if self.reference else []), *self.numeric, *cats]


class GLMLogit:
    """An unpenalised logistic regression (binomial GLM, IRLS, statsmodels): R's ``glm(family = binomial)``."""

    def fit(self, x, y: np.ndarray) -> GLMLogit:
        import statsmodels.api as sm

        self.result_ = sm.GLM(y, x.toarray(), family=sm.families.Binomial()).fit()
        self.coef_ = np.asarray(self.result_.params, dtype=float)
        return self

    def decision_function(self, x) -> np.ndarray:
        """The linear predictor (logit of the fitted score)."""
        return np.asarray(x @ self.coef_, dtype=float).ravel()


def propensity_logit(frame: pd.DataFrame, is_treated: np.ndarray, covariates: list[str], log_column: str | None,
                     seed: int | None, max_controls: int,
                     model: str = "penalised") -> tuple[np.ndarray, Any, PropensityDesign]:
    """Per row, the logit of the fitted propensity score (NaN when a covariate is missing); the model and
    its design. The model (``penalised`` or ``glm``, see the module docstring) is fitted on every complete
    treated row and at most ``max_controls`` complete control rows (a random subset drawn with ``seed``)."""
    from sklearn.linear_model import LogisticRegression

    design = PropensityDesign.fit(frame, covariates, log_column, reference=model == "glm")
    rng = np.random.default_rng(seed)
    complete = design.complete(frame)
    t_rows = np.flatnonzero(is_treated & complete)
    c_rows = np.flatnonzero(~is_treated & complete)
    if len(t_rows) == 0 or len(c_rows) == 0:
        raise ValueError(
            "Matcher.fit (method='propensity'): need treated and control rows with complete "
            f"covariates {covariates}; found {len(t_rows)} treated and {len(c_rows)} controls."
        )
    if len(c_rows) > max_controls:
        c_rows = np.sort(rng.choice(c_rows, max_controls, replace=False))
    fit_rows = np.concatenate([t_rows, c_rows])
    model = GLMLogit() if model == "glm" else LogisticRegression(max_iter=2000, C=1.0)
    model.fit(design.transform(frame.iloc[fit_rows]), is_treated[fit_rows].astype(int))
    logit = np.full(len(frame), np.nan)
    chunk = 500_000
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start:start + chunk]
        ok = complete[start:start + chunk]
        if ok.any():
            logit[start:start + chunk][ok] = model.decision_function(design.transform(part[ok]))
    return logit, model, design
