"""A simulated complete paired-parallel trial as snapshot rows (no Django): for the benchmark, demos and fast tests.

Readers are split 1:1 between the arms; every case is read once in each arm; log reading time,
expert quality and RADPEER scores, preferences, reader calls, a reference standard and AI scores
all carry a known arm effect, so an analysis of these rows has something to find.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from scoring import radpeer
from trial.findings import DEFAULT_FINDINGS

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def simulate_rows(*, n_readers: int = 20, n_cases: int = 2000, n_experts: int = 5, seed: int = 2025,
                  findings: list[str] | None = None, times: dict[str, Any] | None = None,
                  quality_effect: float = 0.25, time_ratio: float = 0.82) -> tuple[dict[str, Any], dict[str, list]]:
    """(trial facts, rows by entity). `times`, if given (reader, case, arm, time arrays, one row per read, as
    bench/stats_lmm.simulate returns them), supplies the reads; otherwise they are drawn here."""
    rng = np.random.default_rng(seed)
    findings = list(findings or DEFAULT_FINDINGS)
    prevalence = np.linspace(0.15, 0.45, len(findings))
    if times is None:
        readers = {"standard": [f"R{2 * i + 2:02d}" for i in range(n_readers // 2)],
                   "assisted": [f"R{2 * i + 1:02d}" for i in range(n_readers - n_readers // 2)]}
        reader_effect = {r: rng.normal(0, 0.2) for rs in readers.values() for r in rs}
        case_effect = rng.normal(0, 0.35, n_cases)
        read_rows = []
        for c in range(n_cases):
            for arm in ("standard", "assisted"):
                r = str(rng.choice(readers[arm]))
                log_t = 4.7 + np.log(time_ratio) * (arm == "assisted") + reader_effect[r] + case_effect[c] \
                    + rng.normal(0, 0.3)
                read_rows.append((r, f"C{c + 1:04d}", arm, float(np.exp(log_t))))
    else:
        names = sorted(set(map(str, times["reader"])))
        rename = {n: f"R{i + 1:02d}" for i, n in enumerate(names)}
        cases_seen = sorted(set(map(str, times["case"])))
        crename = {c: f"C{i + 1:04d}" for i, c in enumerate(cases_seen)}
        read_rows = [(rename[str(r)], crename[str(c)], str(a), float(t))
                     for r, c, a, t in zip(times["reader"], times["case"], times["arm"], times["time"])]
        n_cases = len(cases_seen)
    reader_arm = {r: a for r, _, a, _ in read_rows}
    reader_names = sorted(reader_arm)
    sites = ["site-a", "site-b"]
    reader_site = {r: sites[i % 2] for i, r in enumerate(reader_names)}
    case_codes = [f"C{c + 1:04d}" for c in range(n_cases)]
    experts = [f"E{e + 1:02d}" for e in range(n_experts)]

    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "cases", "allocations", "reads", "reading_events", "reports", "reader_calls", "quality_scores",
        "preferences", "reference_standard", "ai_scores")}
    truth = {}
    for i, code in enumerate(case_codes):
        rows["cases"].append({"case": code, "site": sites[i % 2], "enrolled_at": _iso(T0 + timedelta(minutes=i)),
                              "view_position": "PA"})
        for f, p in zip(findings, prevalence):
            t = int(rng.random() < p)
            truth[(code, f)] = t
            rows["reference_standard"].append({"case": code, "finding": f, "truth": t, "source": "majority"})
            score = float(1 / (1 + np.exp(-(rng.normal(0, 1) + 2.2 * (2 * t - 1)))))
            rows["ai_scores"].append({"case": code, "finding": f, "score": round(score, 6), "model": "sim-model"})
    for pos, r in enumerate(reader_names):
        rows["allocations"].append({"unit_type": "reader", "unit": r, "stratum": reader_site[r], "position": pos,
                                    "block": pos // 2, "block_size": 2, "arm": reader_arm[r],
                                    "allocated_at": _iso(T0)})
    case_effect_q = {c: rng.normal(0, 0.4) for c in case_codes}
    expert_bias = {e: rng.normal(0, 0.3) for e in experts}
    quality_mean: dict[tuple[str, str], float] = {}
    for read_id, (r, c, arm, seconds) in enumerate(read_rows, start=1):
        opened = T0 + timedelta(days=1, seconds=read_id * 400)
        submitted = opened + timedelta(seconds=seconds)
        rows["reads"].append({"read": read_id, "case": c, "reader": r, "reader_site": reader_site[r], "arm": arm,
                              "period": 1, "status": "submitted", "opened_at": _iso(opened),
                              "submitted_at": _iso(submitted), "wall_seconds": seconds, "active_seconds": seconds})
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
        sens = 0.75 if arm == "assisted" else 0.65
        for f in findings:
            t = truth[(c, f)]
            call = int(rng.random() < (sens if t else 0.08))
            rows["reader_calls"].append({"read": read_id, "case": c, "reader": r, "arm": arm, "finding": f,
                                         "call": call})
        latent = 3.9 + quality_effect * (arm == "assisted") + case_effect_q[c]
        quality_mean[(c, arm)] = latent
        for e in experts:
            value = latent + expert_bias[e] + rng.normal(0, 0.6)
            radpeer_score = int(np.clip(np.rint(value - 0.2 + rng.normal(0, 0.3)), 1, 5))
            rows["quality_scores"].append({
                "case": c, "arm": arm, "reader": r, "read": read_id, "report_version": 1, "expert": e,
                "score": int(np.clip(np.rint(value), 1, 5)), "radpeer": radpeer.CODE_FOR_SCORE[radpeer_score],
                "radpeer_score": radpeer_score, "seconds": float(np.round(rng.uniform(20, 90), 3))})
    for c in case_codes:
        diff = quality_mean[(c, "assisted")] - quality_mean[(c, "standard")]
        for e in experts:
            u = rng.normal(diff, 0.8)
            preferred = "assisted" if u > 0.25 else "standard" if u < -0.25 else "none"
            left = "assisted" if rng.random() < 0.5 else "standard"
            rows["preferences"].append({"case": c, "expert": e, "preferred": preferred, "left_arm": left,
                                        "seconds": float(np.round(rng.uniform(20, 90), 3))})
    trial = {"code": "sim", "design": "paired_parallel", "findings": findings, "experts_per_item": n_experts}
    return trial, rows
