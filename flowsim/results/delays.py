"""How a stay's time stamps become delays, counted the way the NHS counts them.

Two clocks run on every stay (DESIGN.md, "Delays, the NHS way"):

- **Medically fit** (``mffd``): declared no longer meeting the criteria to reside (NCTR).  Today's
  national measures start here: patients not meeting the criteria to reside, and the Discharge
  Ready Date (DRD), which NHS England defines as "the date that a patient no longer met the
  Criteria to Reside" (Discharge Ready Date guidance, examples and FAQs, NHS England 2024).
- **Ready for transfer** (``rft``): a clinical decision, a multidisciplinary-team decision and safe
  to transfer (Monthly Delayed Transfer of Care SitReps, Definitions and Guidance v1.09, NHS
  England, October 2015, in force in 2016/17).  A delayed transfer of care (DTOC) runs from here
  until the patient leaves the bed, while they occupy an acute bed or a non-acute bed whose
  provider returns the SitRep.

The segments a stay can have, each with a SitRep reason group and a responsible organisation:

1. *assessment* (reason A, completion of assessment): in the acute bed from ready for transfer to
   the end of the assessment, when the pathway assesses after readiness;
2. *waiting for the pathway* (its ``dtoc_reason``: C further non-acute NHS care, E care package in
   own home, D care home): in the acute bed from readiness (or the assessment's end) until the
   patient leaves it, so a place granted but not yet taken (transfer time, discharge hours,
   weekends) stays a delay under the pathway's reason;
3. *onward care* (D care home, E home care): at the end of a downstream stay, waiting in the
   place for a care home or a home-care package.  It is a DTOC only in a bed-based service whose
   provider reports; a P1 client waits at home, which is nobody's delayed bed-day.

P0 patients waiting for transport or discharge hours are medically fit (NCTR, and in the DRD
delay) but not a SitRep DTOC: none of the SitRep's reasons covers a hospital's own discharge
process, so they are counted in the NCTR and DRD measures only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from flowsim.model.codes import Outcome
from flowsim.results.records import Records
from flowsim.scenario.schema import OrgShares, Responsible, Scenario

#: SitRep reason groups (2016/17 DTOC SitRep reasons A, C, E, D), in journey order.
REASONS: tuple[str, ...] = ("assessment", "non_acute_nhs", "home_care", "care_home")
REASON_LABELS: dict[str, str] = {
    "assessment": "completion of assessment (A)",
    "non_acute_nhs": "further non-acute NHS care (C)",
    "home_care": "care package in own home (E)",
    "care_home": "residential or nursing home (D)",
}
ORGS: tuple[str, ...] = ("nhs", "social_care", "both")


def resolve_org(spec: Responsible, u: np.ndarray) -> np.ndarray:
    """The organisation each delayed patient's delay is attributed to, from their uniform ``u``."""
    if not isinstance(spec, OrgShares):
        return np.full(len(u), spec, dtype=object)
    cut = np.array([spec.nhs, spec.nhs + spec.social_care])
    return np.array(ORGS, dtype=object)[np.searchsorted(cut, u, side="right").clip(0, 2)]


@dataclass(frozen=True)
class Segment:
    """One kind of delay interval, at most one per stay: ``[start, end)``, NaN start for none, NaN end for open."""

    name: str
    start: np.ndarray
    end: np.ndarray
    reason: np.ndarray
    org: np.ndarray
    acute: bool           # in an acute bed (else in a downstream place)
    in_bed: np.ndarray    # in a bed at all
    counted: np.ndarray   # a DTOC the SitRep counts

    def where(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intervals of the stays in ``mask`` (others get NaN starts)."""
        return np.where(mask & self.counted, self.start, np.nan), self.end


def _wait_org(rec: Records, sc: Scenario) -> np.ndarray:
    """Who a delay waiting for a pathway is attributed to: the pathway's rule, else the awaited service's funder."""
    out = np.full(len(rec), "", dtype=object)
    services = {n: (p, s) for p, pw in sc.pathways.items() for n, s in pw.services.items()}
    funder = np.array([services[n][1].funder for n in rec.service_names] + [""], dtype=object)
    for pname, pw in sc.pathways.items():
        m = rec.on_pathway(pname)
        if pname == "P0" or not m.any():
            continue
        if pw.responsible is not None:
            out[m] = resolve_org(pw.responsible, rec["u_org"][m])
            continue
        first = next(iter(pw.services.values())).funder if pw.services else "nhs"
        got = funder[rec["service"][m]]
        out[m] = np.where(got == "", first, got)
    return out


def add_delay_columns(rec: Records, sc: Scenario) -> Records:
    """The records with each stay's delay segments, reasons, organisations and reporting flags added."""
    c = dict(rec.cols)
    n = len(rec)
    # P1-P3 hospital stays (deaths in hospital take no pathway; step-up referrals never had an acute bed)
    downstream = (c["pathway_code"] >= 1) & ~c["elective"] & (c["step_up"] < 0)
    needs = rec.by_pathway({p: pw.needs_assessment for p, pw in sc.pathways.items()}, False, bool)
    after = rec.by_pathway({p: pw.assessment_timing == "after_ready" for p, pw in sc.pathways.items()}, True, bool)
    assess_seg = downstream & needs & after
    c["dtoc_start"] = np.where(downstream, c["rft"], np.nan)
    c["wait_start"] = np.where(assess_seg, np.where(np.isnan(c["rft"]), np.nan, c["assess_end"]), c["dtoc_start"])
    reason = rec.by_pathway({p: pw.reason(p) for p, pw in sc.pathways.items()}, "")
    c["wait_reason"] = np.where(downstream, reason, "").astype(object)
    assess_org = (resolve_org(sc.assessment.responsible, c["u_org"]) if sc.assessment is not None
                  else np.full(n, "", dtype=object))
    c["assess_org"] = np.where(assess_seg, assess_org, "")
    c["wait_org"] = _wait_org(rec, sc)
    # onward care from a downstream place
    outcome = c["outcome"]
    ltc, hwc = outcome == Outcome.LONG_TERM_CARE, outcome == Outcome.HOME_WITH_CARE
    c["onward_start"] = np.where(ltc | hwc, c["stay_end"], np.nan)
    c["onward_reason"] = np.where(ltc, "care_home", np.where(hwc, "home_care", "")).astype(object)
    onward_org = np.where(ltc, resolve_org(sc.long_term_care.responsible, c["u_org"]),
                          resolve_org(sc.home_care.responsible, c["u_org"]))
    c["onward_org"] = np.where(ltc | hwc, onward_org, "").astype(object)
    services = {n: (p, s) for p, pw in sc.pathways.items() for n, s in pw.services.items()}
    in_bed = np.array([services[nm][1].in_beds(services[nm][0]) for nm in rec.service_names] + [False])
    reports = np.array([services[nm][1].reporting(services[nm][0]) for nm in rec.service_names] + [False])
    c["onward_in_bed"] = (ltc | hwc) & in_bed[c["service"]]
    c["onward_reports"] = (ltc | hwc) & reports[c["service"]]
    # Discharge Ready Date delay: discharge date minus the date no longer meeting the criteria to reside
    with np.errstate(invalid="ignore"):
        c["drd_delay_days"] = np.floor(c["acute_end"]) - np.floor(c["mffd"])
    return replace(rec, cols=c)


def segments(rec: Records) -> list[Segment]:
    """The three kinds of delay segment of every stay (see the module docstring)."""
    n = len(rec)
    acute_bed = np.ones(n, dtype=bool)
    assess = rec["assess_org"] != ""
    return [
        Segment("assessment", np.where(assess, rec["dtoc_start"], np.nan), rec["assess_end"],
                np.full(n, "assessment", dtype=object), rec["assess_org"], True, acute_bed, acute_bed),
        Segment("pathway", rec["wait_start"], rec["acute_end"], rec["wait_reason"], rec["wait_org"], True,
                acute_bed, acute_bed),
        Segment("onward", rec["onward_start"], rec["onward_granted"], rec["onward_reason"], rec["onward_org"], False,
                rec["onward_in_bed"], rec["onward_reports"]),
    ]


def dtoc_intervals(segs: list[Segment], acute: bool | None = None, reason: str | None = None,
                   org: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All counted DTOC intervals, optionally only acute (True) or non-acute (False), of a reason or org."""
    starts, ends = [], []
    for seg in segs:
        if acute is not None and seg.acute != acute:
            continue
        mask = np.ones(len(seg.start), dtype=bool)
        if reason is not None:
            mask &= seg.reason == reason
        if org is not None:
            mask &= seg.org == org
        s, e = seg.where(mask)
        starts.append(s)
        ends.append(e)
    if not starts:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(starts), np.concatenate(ends)
