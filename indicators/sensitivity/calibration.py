"""Empirical calibration: the systematic-error distribution fitted on negative controls (Schuemie et al.
2014) and calibrated confidence intervals (Schuemie et al. 2018).

Model. Each negative-control outcome i has a true effect of zero, an estimate ``theta_i`` (log ratio)
and a standard error ``tau_i``. The systematic error of the design is a normal variable
``b ~ N(mu, sigma^2)``; the estimate is ``theta_i ~ N(b_i, tau_i^2)``, so marginally
``theta_i ~ N(mu, sigma^2 + tau_i^2)``. ``mu`` and ``sigma`` are fitted by maximum likelihood (as
OHDSI's ``EmpiricalCalibration::fitNull``). A headline log estimate ``theta`` with standard error ``se``
is then calibrated by removing the mean error and adding its variance:
``theta - mu ± z * sqrt(se^2 + sigma^2)`` — the null-only case of Schuemie 2018's systematic-error model
(``calibrateConfidenceInterval`` with an error model that does not depend on the true effect).

Assumption (stated with every result): the headline estimates carry the same systematic error as the
negative controls — the bias of the design (unmeasured confounding, selection, measurement) on a
spending outcome the programme cannot change is exchangeable with its bias on the headline outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

ASSUMPTION = ("the headline estimates share the systematic error of the negative controls: the design's "
              "bias on spending the programme cannot change is exchangeable with its bias on the headline "
              "outcomes (Schuemie et al. 2014, 2018)")
ASSUMPTION_FR = ("les estimations principales partagent l'erreur systématique des contrôles négatifs : le "
                 "biais du plan d'étude sur des dépenses que le programme ne peut pas modifier est "
                 "échangeable avec son biais sur les résultats principaux (Schuemie et al. 2014, 2018)")

# Below this SD the systematic error is treated as a point mass (the likelihood is flat near 0).
_MIN_SIGMA = 1e-8


def null_log_likelihood(mu: float, sigma: float, theta: np.ndarray, tau: np.ndarray) -> float:
    """Log-likelihood of (mu, sigma) given log estimates ``theta`` with standard errors ``tau``."""
    sd = np.sqrt(sigma**2 + tau**2)
    return float(stats.norm.logpdf(theta, loc=mu, scale=sd).sum())


def _sigma_given_mu(mu: float, theta: np.ndarray, tau: np.ndarray) -> float:
    """The sigma >= 0 maximising the likelihood for a fixed mu (bounded 1-D search on log sigma)."""
    upper = max(float(np.abs(theta - mu).max()) * 2.0, 1e-3)
    res = optimize.minimize_scalar(lambda s: -null_log_likelihood(mu, s, theta, tau),
                                   bounds=(0.0, upper), method="bounded", options={"xatol": 1e-10})
    s = float(res.x)
    # the bounded search never lands exactly on 0: keep 0 when it is at least as likely
    if null_log_likelihood(mu, 0.0, theta, tau) >= null_log_likelihood(mu, s, theta, tau):
        return 0.0
    return s


def profile_log_likelihood(mu: float, theta: np.ndarray, tau: np.ndarray) -> float:
    """max over sigma of the log-likelihood at ``mu``."""
    return null_log_likelihood(mu, _sigma_given_mu(mu, theta, tau), theta, tau)


@dataclass(frozen=True)
class SystematicError:
    """The fitted systematic-error distribution N(mean, sd^2) on the log scale, with the profile-
    likelihood CI of its mean."""

    mean: float
    sd: float
    mean_ci_low: float
    mean_ci_high: float
    n: int
    ci_level: float
    log_likelihood: float

    @property
    def expected_absolute_error(self) -> float:
        """E|b| for b ~ N(mean, sd^2): the expected absolute systematic error (EASE, Schuemie 2020)."""
        mu, s = self.mean, self.sd
        if s <= _MIN_SIGMA:
            return abs(mu)
        return float(s * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * s**2))
                     + mu * (1 - 2 * stats.norm.cdf(-mu / s)))

    def calibrate(self, log_estimate: float, se: float) -> tuple[float, float]:
        """Calibrated (low, high) CI of a log estimate with standard error ``se``, on the log scale:
        ``log_estimate - mean ± z * sqrt(se^2 + sd^2)``."""
        if se < 0 or not math.isfinite(se):
            raise ValueError(f"the standard error of a log estimate must be a finite number >= 0; got {se}")
        z = stats.norm.ppf(0.5 + self.ci_level / 2)
        half = z * math.sqrt(se**2 + self.sd**2)
        centre = log_estimate - self.mean
        return centre - half, centre + half

    def calibrated_estimate(self, log_estimate: float) -> float:
        return log_estimate - self.mean


def fit_systematic_error(theta: np.ndarray, tau: np.ndarray, ci_level: float = 0.95) -> SystematicError:
    """Maximum-likelihood fit of the systematic-error distribution (Schuemie 2014) on negative-control
    log estimates ``theta`` with standard errors ``tau``; the CI of the mean is the profile-likelihood
    interval {mu: 2 * (max LL - profile LL(mu)) <= chi2_1(ci_level)}."""
    theta, tau = np.asarray(theta, dtype=float), np.asarray(tau, dtype=float)
    if theta.shape != tau.shape or theta.ndim != 1:
        raise ValueError(f"theta and tau must be 1-D arrays of the same length; got {theta.shape} and {tau.shape}")
    ok = np.isfinite(theta) & np.isfinite(tau) & (tau > 0)
    if ok.sum() < 2:
        raise ValueError(f"fitting a systematic-error distribution needs at least 2 negative-control estimates "
                         f"with a finite estimate and standard error > 0; got {int(ok.sum())} of {theta.size}")
    theta, tau = theta[ok], tau[ok]
    lo_b, hi_b = float(theta.min()) - 1e-9, float(theta.max()) + 1e-9  # the MLE of mu lies in the range
    res = optimize.minimize_scalar(lambda m: -profile_log_likelihood(m, theta, tau), bounds=(lo_b, hi_b),
                                   method="bounded", options={"xatol": 1e-10})
    mu = float(res.x)
    ll = profile_log_likelihood(mu, theta, tau)
    sigma = _sigma_given_mu(mu, theta, tau)
    crit = stats.chi2.ppf(ci_level, df=1) / 2

    def gap(m: float) -> float:
        return ll - profile_log_likelihood(m, theta, tau) - crit

    # with sigma profiled out the likelihood falls only logarithmically far from mu: widen until outside
    span = (hi_b - lo_b) + 4 * float(tau.max())
    while gap(mu - span) < 0 or gap(mu + span) < 0:
        span *= 2
    lo = optimize.brentq(gap, mu - span, mu, xtol=1e-10)
    hi = optimize.brentq(gap, mu, mu + span, xtol=1e-10)
    return SystematicError(mean=mu, sd=sigma, mean_ci_low=float(lo), mean_ci_high=float(hi), n=int(theta.size),
                           ci_level=ci_level, log_likelihood=ll)


__all__ = ["ASSUMPTION", "ASSUMPTION_FR", "SystematicError", "fit_systematic_error", "null_log_likelihood",
           "profile_log_likelihood"]
