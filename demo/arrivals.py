"""The live demo's arrival simulator: phantom chest films arriving at the demo sites as a hospital's PACS would send
them, a few seconds to a minute apart, through the same service a real arrival uses (trial.services.receive_image).

Most films are eligible adult PA chest films; a few are not (a lateral view, a child), so that the screening log and
the CONSORT flow have something to count; now and then one is flagged urgent. Not for clinical use: the images are
phantoms (their header says so).
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pydicom

from core.errors import ServiceError
from demo import phantoms
from trial import services
from trial.models import Case, Trial

logger = logging.getLogger(__name__)

# How an ineligible film differs from an eligible one: (what, DICOM keyword, value).
INELIGIBLE = (("a lateral view", "ViewPosition", "LL"), ("a child", "PatientAge", "009Y"))


@dataclass(frozen=True)
class Arrival:
    site: str
    case: Case | None       # None: not enrolled (see reason)
    reason: str = ""
    phantom: phantoms.Phantom | None = None  # the truth of an enrolled film (the demo simulates reading it)


def film(rng: np.random.Generator, *, seed: int, ineligible_share: float, size: int = 512) -> tuple[bytes, str,
                                                                                                  phantoms.Phantom]:
    """One arriving film: the DICOM bytes, what makes it ineligible ("" if nothing), and its phantom (the truth)."""
    phantom = phantoms.make_phantom(findings=phantoms.random_findings(rng), seed=seed, size=size)
    if rng.random() >= ineligible_share:
        return phantom.dicom, "", phantom
    what, keyword, value = INELIGIBLE[int(rng.integers(len(INELIGIBLE)))]
    ds = pydicom.dcmread(io.BytesIO(phantom.dicom))
    setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), what, phantom


def arrive(*, trial: Trial, rng: np.random.Generator, seed: int, ineligible_share: float = 0.05,
           urgent_share: float = 0.1, size: int = 512) -> Arrival:
    """One film arrives at a random site of the trial; a refusal is an answer (logged in the screening log), not an
    error."""
    sites = list(trial.sites.order_by("code"))
    site = sites[int(rng.integers(len(sites)))]
    data, _, phantom = film(rng, seed=seed, ineligible_share=ineligible_share, size=size)
    try:
        case = services.receive_image(trial=trial, site=site, data=data, source="simulator",
                                      filename=f"arrival-{seed}.dcm", clinical_history=phantom.clinical_history,
                                      urgent=bool(rng.random() < urgent_share))
    except ServiceError as exc:
        return Arrival(site.code, None, exc.message)
    if case is None:  # no frontal image: it waits for one of its study (screened out when the study settles)
        return Arrival(site.code, None, "waiting for a frontal image of its study", phantom=phantom)
    return Arrival(site.code, case, phantom=phantom)


def run(*, trial_code: str, min_seconds: float, max_seconds: float, count: int | None, seed: int,
        ineligible_share: float = 0.05, sleep: Callable[[float], None] = time.sleep,
        report: Callable[[Arrival], None] = lambda arrival: None) -> int:
    """Arrivals until `count` (None: for ever), each after an exponential wait with the mean of the bounds (a Poisson
    stream), kept within them. The number of films sent."""
    rng = np.random.default_rng(seed)
    mean = (min_seconds + max_seconds) / 2
    sent = 0
    while count is None or sent < count:
        sleep(float(np.clip(rng.exponential(mean), min_seconds, max_seconds)))
        trial = Trial.objects.get(code=trial_code)  # fresh: it may have been paused or closed meanwhile
        try:
            arrival = arrive(trial=trial, rng=rng, seed=seed * 100_000 + sent, ineligible_share=ineligible_share)
        except ServiceError as exc:  # the trial is not open (closed, locked): say so and stop
            logger.warning("Arrivals stop: %s", exc.message)
            return sent
        report(arrival)
        sent += 1
    return sent
