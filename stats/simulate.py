"""A simulated complete paired-parallel trial as snapshot rows (no Django): for the benchmark, demos and fast tests.

The reads, the experts' quality and RADPEER scores and their preferences come from the trial
simulator stats.methods.simulation (readers randomized within their site and nested in the arms,
every case read once in each arm; reader, case, report, expert and site effects), so an analysis of
these rows meets the variation a real trial has and something to find: a latent quality effect and a
time ratio. Added here: wall time (active time plus idle time), the readers' calls of each finding
(logit of a correct call with reader and case effects and an arm effect), a reference standard, AI
scores, reports and allocations. "assisted" is the simulator's treatment arm, "standard" its reference.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy.special import expit

from scoring import radpeer
from trial.findings import DEFAULT_FINDINGS

from .methods.simulation import SimulationParameters, simulate_trial

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ARM_NAMES = {"treatment": "assisted", "reference": "standard"}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def simulate_rows(*, n_readers: int = 20, n_cases: int = 2000, n_experts: int = 5, seed: int = 2025,
                  findings: list[str] | None = None, quality_effect: float = 0.25, time_ratio: float = 0.82,
                  n_sites: int | None = None, reader_sd: float = 0.25,
                  detection_log_odds_ratio: float = 0.4) -> tuple[dict[str, Any], dict[str, list]]:
    """(trial facts, rows by entity) of one simulated paired-parallel trial; `n_readers` even, ≥ 2 per site."""
    n_sites = n_sites or max(1, min(3, n_readers // 2))
    trial_sim = simulate_trial(SimulationParameters(n_cases=n_cases, n_readers=n_readers, n_experts=n_experts,
                                                    n_sites=n_sites, quality_effect=quality_effect,
                                                    time_ratio=time_ratio, reader_sd=reader_sd), seed=seed)
    rng = np.random.default_rng(seed + 1)
    findings = list(findings or DEFAULT_FINDINGS)
    prevalence = np.linspace(0.15, 0.45, len(findings))
    site_name = {f"S{i + 1}": f"site-{chr(ord('a') + i)}" for i in range(n_sites)}
    arm_of = {k: ARM_NAMES[v] for k, v in trial_sim.effects["reader_arm"].items()}
    reader_site = {k: site_name[v] for k, v in trial_sim.effects["reader_site"].items()}
    reads = trial_sim.reads
    case_site = {c: site_name[s] for c, s in zip(reads["case"].tolist(), reads["site"].tolist())}
    case_codes = sorted(case_site)
    experts = sorted(set(trial_sim.scores["expert"].tolist()))

    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "cases", "allocations", "reads", "reading_events", "reports", "reader_calls", "quality_scores",
        "preferences", "reference_standard", "ai_scores")}
    truth = {}
    for i, code in enumerate(case_codes):
        rows["cases"].append({"case": code, "site": case_site[code], "enrolled_at": _iso(T0 + timedelta(minutes=i)),
                              "view_position": "PA"})
        for f, p in zip(findings, prevalence):
            t = int(rng.random() < p)
            truth[(code, f)] = t
            rows["reference_standard"].append({"case": code, "finding": f, "truth": t, "source": "majority"})
            score = float(expit(rng.normal(0, 1) + 2.2 * (2 * t - 1)))
            rows["ai_scores"].append({"case": code, "finding": f, "score": round(score, 6), "model": "sim-model"})
    by_site: dict[str, list[str]] = {}
    for r in sorted(arm_of):
        by_site.setdefault(reader_site[r], []).append(r)
    for site, readers in sorted(by_site.items()):
        for pos, r in enumerate(readers):
            rows["allocations"].append({"unit_type": "reader", "unit": r, "stratum": site, "position": pos,
                                        "block": pos // 2, "block_size": 2, "arm": arm_of[r],
                                        "allocated_at": _iso(T0)})

    # detection: logit P(correct call) = base + arm effect + reader + case, per finding's truth
    reader_detect = {r: rng.normal(0, 0.4) for r in arm_of}
    case_detect = {c: rng.normal(0, 0.6) for c in case_codes}
    read_id_of: dict[tuple[str, str], int] = {}
    for i in range(reads["read"].size):
        read_id = int(reads["read"][i])
        c, r = str(reads["case"][i]), str(reads["reader"][i])
        arm = ARM_NAMES[str(reads["arm"][i])]
        read_id_of[(c, arm)] = read_id
        seconds = round(float(reads["time"][i]), 3)
        wall = round(seconds + float(rng.exponential(0.15 * seconds)), 3)
        opened = T0 + timedelta(days=1, seconds=read_id * 400)
        submitted = opened + timedelta(seconds=wall)
        rows["reads"].append({"read": read_id, "case": c, "reader": r, "reader_site": reader_site[r], "arm": arm,
                              "period": 1, "status": "submitted", "opened_at": _iso(opened),
                              "submitted_at": _iso(submitted), "wall_seconds": wall, "active_seconds": seconds})
        rows["reading_events"] += [
            {"read": read_id, "seq": 1, "kind": "opened", "server_time": _iso(opened), "tab": "t1",
             "clock_skew_seconds": None},
            {"read": read_id, "seq": 2, "kind": "submitted", "server_time": _iso(submitted), "tab": "t1",
             "clock_skew_seconds": None},
        ]
        kept = float(np.clip(rng.beta(6, 2), 0, 1)) if arm == "assisted" else None
        rows["reports"].append({"report": read_id, "read": read_id, "case": c, "reader": r, "arm": arm,
                                "version": 1, "final": 1, "created_at": _iso(submitted), "signed": 0,
                                "signed_at": None, "findings": "Simulated findings.",
                                "impression": "Simulated impression.", "reason": "",
                                "draft_kept_share": kept, "draft_edit_distance": None if kept is None else 1 - kept})
        lift = detection_log_odds_ratio * (arm == "assisted")
        for f in findings:
            t = truth[(c, f)]
            base = 0.6 if t else 2.4        # about 65 % sensitivity, 92 % specificity in the standard arm
            correct = rng.random() < expit(base + lift + reader_detect[r] + case_detect[c])
            rows["reader_calls"].append({"read": read_id, "case": c, "reader": r, "arm": arm, "finding": f,
                                         "call": int(correct) if t else int(not correct)})
    s = trial_sim.scores
    for i in range(s["score"].size):
        c, arm = str(s["case"][i]), ARM_NAMES[str(s["arm"][i])]
        rows["quality_scores"].append({
            "case": c, "arm": arm, "reader": str(s["reader"][i]), "read": read_id_of[(c, arm)], "report_version": 1,
            "expert": str(s["expert"][i]), "score": int(s["score"][i]), "radpeer": str(s["radpeer"][i]),
            "radpeer_score": radpeer.SCORE[str(s["radpeer"][i])], "seconds": float(np.round(rng.uniform(20, 90), 3))})
    p = trial_sim.preferences
    for i in range(p["preferred"].size):
        left_treatment = rng.random() < 0.5
        readers = (str(p["treatment_reader"][i]), str(p["reference_reader"][i]))
        rows["preferences"].append({
            "case": str(p["case"][i]), "expert": str(p["expert"][i]),
            "preferred": ARM_NAMES.get(str(p["preferred"][i]), "none"),
            "left_arm": "assisted" if left_treatment else "standard",
            "left_reader": readers[0] if left_treatment else readers[1],
            "right_reader": readers[1] if left_treatment else readers[0],
            "seconds": float(np.round(rng.uniform(20, 90), 3)), "guess": None})
    trial = {"code": "sim", "design": "paired_parallel", "findings": findings, "experts_per_item": len(experts)}
    return trial, rows
