"""Batch baselines for the churn evaluation: BG/NBD and Pareto/NBD fitted on the calibration data.

What a retention analyst would do with the same history: summarise every
buyer at the cut-off as ``(frequency, recency, T)`` in days, fit BG/NBD and
Pareto/NBD by maximum likelihood on all of them, and rank customers by the
model's probability of no purchase in the horizon (a calibrated probability:
it has a Brier score) or by its expected purchases in the horizon (fewer =
riskier; the ranking ``lifetimes`` users usually take). Our own fits
(:mod:`models.btyd`, :mod:`models.pareto_nbd`) are used; when the
``lifetimes`` package is installed its fits run on the same summary in the
same run, as a cross-check.

Customers without a purchase before the cut-off have no BTYD summary: these
models say nothing about them, and they get the riskiest score (no purchase
expected).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.btyd import bgnbd_expected_purchases_np, bgnbd_prob_no_purchase, fit_bgnbd
from models.pareto_nbd import (
    fit_pareto_nbd,
    pareto_expected_purchases,
    pareto_prob_no_purchase,
)

__all__ = ["BatchScores", "batch_btyd_scores"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchScores:
    """One batch model's scores of the population (higher = riskier)."""

    name: str
    scores: NDArray[np.float64]
    probability: bool  # scores are P(no purchase in the horizon): a Brier score applies
    params: dict[str, float]


def batch_btyd_scores(
    summaries: Mapping[str, tuple[int, int, int]],
    population: Sequence[str],
    horizon_days: int,
    *,
    with_lifetimes: bool = True,
) -> list[BatchScores]:
    """Fit BG/NBD and Pareto/NBD on ``summaries`` (all buyers) and score ``population``.

    Parameters
    ----------
    summaries
        Customer -> ``(frequency, recency, T)`` at the cut-off, in days.
    population
        The customers to rank (those without a summary get the riskiest score).
    horizon_days
        The horizon the label looks at.
    with_lifetimes
        Also fit with ``lifetimes`` when it is importable.
    """
    ids = list(summaries)
    data = np.asarray([summaries[c] for c in ids], dtype=float).reshape(-1, 3)
    x, tx, big_t = data[:, 0], data[:, 1], data[:, 2]
    index = {c: i for i, c in enumerate(ids)}
    rows = np.asarray([index.get(c, -1) for c in population])
    known = rows >= 0
    px, ptx, pt = x[rows[known]], tx[rows[known]], big_t[rows[known]]
    h = float(horizon_days)

    def spread(values: NDArray[np.float64], unknown: float) -> NDArray[np.float64]:
        out = np.full(len(population), unknown)
        out[known] = values
        return out

    out: list[BatchScores] = []
    bg = fit_bgnbd(x, tx, big_t)
    bg_params = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b}
    out.append(
        BatchScores(
            "BG/NBD P(no purchase)",
            spread(bgnbd_prob_no_purchase(h, px, ptx, pt, bg), 1.0),
            True,
            bg_params,
        )
    )
    out.append(
        BatchScores(
            "BG/NBD expected purchases",
            spread(-bgnbd_expected_purchases_np(h, px, ptx, pt, bg), 0.0),
            False,
            bg_params,
        )
    )
    with np.errstate(all="ignore"):
        pn = fit_pareto_nbd(x, tx, big_t)
        pn_params = {"r": pn.r, "alpha": pn.alpha, "s": pn.s, "beta": pn.beta}
        out.append(
            BatchScores(
                "Pareto/NBD P(no purchase)",
                spread(pareto_prob_no_purchase(h, px, ptx, pt, pn), 1.0),
                True,
                pn_params,
            )
        )
        out.append(
            BatchScores(
                "Pareto/NBD expected purchases",
                spread(-pareto_expected_purchases(h, px, ptx, pt, pn), 0.0),
                False,
                pn_params,
            )
        )
    if with_lifetimes:
        out.extend(_lifetimes_scores(x, tx, big_t, px, ptx, pt, h, spread))
    return out


def _lifetimes_scores(
    x: NDArray[np.float64],
    tx: NDArray[np.float64],
    big_t: NDArray[np.float64],
    px: NDArray[np.float64],
    ptx: NDArray[np.float64],
    pt: NDArray[np.float64],
    h: float,
    spread: Any,
) -> list[BatchScores]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from lifetimes import BetaGeoFitter, ParetoNBDFitter
    except ImportError:
        return []
    out = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for name, fitter in (
            ("BG/NBD expected purchases (lifetimes)", BetaGeoFitter()),
            ("Pareto/NBD expected purchases (lifetimes)", ParetoNBDFitter()),
        ):
            try:
                fitter.fit(x, tx, big_t)
                expected = fitter.conditional_expected_number_of_purchases_up_to_time(
                    h, px, ptx, pt
                )
            except Exception:  # lifetimes is a cross-check, not a dependency
                log.exception("lifetimes could not fit %s", name)
                continue
            params = {k: float(v) for k, v in fitter.params_.items()}
            out.append(BatchScores(name, spread(-np.asarray(expected), 0.0), False, params))
    return out
