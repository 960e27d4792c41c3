"""Time a whole analysis run of a simulated paired-parallel trial (20 readers × 2,000 cases = 4,000 reads), and
our crossed LMM against R lme4 + lmerTest on reads of the same size (bench/stats_lmm.py, reused by import).

Run by hand from the repository root:  python bench/stats.py [--readers 20] [--cases 2000] [--experts 5]

The trial is written into a fresh SQLite database in a temporary folder (bulk inserts: cases,
allocations, reads with their events, reports with the readers' calls, AI scores); the scoring rows
(5 experts' quality and RADPEER scores of every report, their preferences, the reference standard)
stand in for the scoring app's own rows (scoring.selectors.analysis_rows)
would return them. Then `stats.services.execute_run` is timed: reading the snapshot rows from the
database, the canonical snapshot and its SHA-256, storing it, every analysis of the default plan
(the LMMs with site, the ordinal GLMM, the preference GLMM, the detection GLMMs, the fixed-reader
sensitivities, DeLong AUCs, agreement, subgroups with their interaction tests, multiplicity, the flow)
and storing the results. Goal: under 10 s. The export zip (CSV, XLSX, SPSS, Stata) and the report
(four plots) are timed too, apart: they are made on download, not in the run.

The trial is stats.simulate.simulate_rows (stats.methods.simulation's reader, case, report, expert and
site effects). The LMM comparison with R printed below is bench/stats_lmm.py's own simulated reads of
the same size and seed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _setup_django(folder: str) -> None:
    os.environ["CXR_VAR_DIR"] = folder
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    os.environ["CXR_MEDIA_ROOT"] = f"{folder}/media"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("CXR_DEVELOPMENT", "1")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _to_scoring_format(rows: dict) -> dict:
    """Our simulated scoring entities back into scoring.selectors.analysis_rows' format."""
    return {
        "quality": [{"case": q["case"], "arm": q["arm"], "reader": q["reader"], "read": q["read"],
                     "report_version": 1, "expert": q["expert"], "overall": q["score"], "radpeer": q["radpeer"],
                     "seconds": q["seconds"]} for q in rows["quality_scores"]],
        "preference": [{"case": p["case"], "expert": p["expert"], "left_arm": p["left_arm"],
                        "preferred_arm": None if p["preferred"] == "none" else p["preferred"],
                        f"reader_{p['left_arm']}": p["left_reader"],
                        f"reader_{'standard' if p['left_arm'] == 'assisted' else 'assisted'}": p["right_reader"],
                        "seconds": p["seconds"]} for p in rows["preferences"]],
        "reference_standard": [{"case": r["case"], "finding": r["finding"], "present": bool(r["truth"]),
                                "method": r["source"]} for r in rows["reference_standard"]],
    }


def build_trial(rows: dict, trial_facts: dict, n_experts: int):
    """Write the simulated trial into the database with bulk inserts; return (trial, statistician)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from ai.models import AIDraft, DraftStatus, ModelVersion, TrialModel
    from reading.models import Read, ReadEvent, Report
    from trial import services as trial_services
    from trial.models import Allocation, Case, Membership, Role, Site, Status, Trial

    User = get_user_model()
    admin = User.objects.create_user("bench-admin", password="x" * 12, is_staff=True)
    trial = trial_services.create_trial(by=admin, code="bench", title="Benchmark trial",
                                        findings=trial_facts["findings"],
                                        experts_per_item=n_experts)
    sites = {code: Site.objects.create(trial=trial, code=code, name=code)
             for code in sorted({c["site"] for c in rows["cases"]})}
    statistician = User.objects.create_user("bench-stat", password="x" * 12)
    Membership.objects.create(trial=trial, user=statistician, role=Role.STATISTICIAN, pseudonym="T01")
    with transaction.atomic():
        readers = {}
        for a in rows["allocations"]:
            user = User.objects.create_user(f"bench-{a['unit']}", password="x" * 12)
            readers[a["unit"]] = Membership.objects.create(trial=trial, user=user, role=Role.READER,
                                                           site=sites[a["stratum"]], pseudonym=a["unit"])
        for i in range(n_experts):
            user = User.objects.create_user(f"bench-E{i + 1:02d}", password="x" * 12)
            Membership.objects.create(trial=trial, user=user, role=Role.EXPERT, pseudonym=f"E{i + 1:02d}")
        Allocation.objects.bulk_create([
            Allocation(trial=trial, stratum=a["stratum"], position=a["position"], unit_type="reader",
                       membership=readers[a["unit"]], arm=a["arm"], block=a["block"], block_size=a["block_size"],
                       allocated_by=admin) for a in rows["allocations"]])
        cases = Case.objects.bulk_create([
            Case(trial=trial, site=sites[c["site"]], code=c["case"], source_fingerprint=c["case"],
                 dicom=f"bench/{c['case']}.dcm", display_image="x.png", thumbnail="x.png", modality="DX",
                 view_position=c["view_position"], rows=2048, columns=2048, bits_stored=12, photometric="MONOCHROME2",
                 transfer_syntax="1.2.840.10008.1.2.1", display_width=1024, display_height=1024, window_center=2048,
                 window_width=4096, window_source="file", enrolled_by=admin) for c in rows["cases"]])
        case_of = {c.code: c for c in cases}
        model = ModelVersion.objects.create(name="bench-model", backend="http", url="http://127.0.0.1:9/v1")
        TrialModel.objects.create(trial=trial, model_version=model, assigned_by=admin)
        scores: dict[str, dict] = {}
        for s in rows["ai_scores"]:
            scores.setdefault(s["case"], {})[s["finding"]] = s["score"]
        AIDraft.objects.bulk_create([AIDraft(case=case_of[c], model_version=model, status=DraftStatus.READY,
                                             findings="Draft findings.", impression="Draft impression.",
                                             finding_scores=scores[c]) for c in scores])
        parse = datetime.fromisoformat
        Read.objects.bulk_create([
            Read(id=r["read"], trial=trial, case=case_of[r["case"]], reader=readers[r["reader"]], arm=r["arm"],
                 order_key=r["read"], status="submitted", opened_at=parse(r["opened_at"]),
                 submitted_at=parse(r["submitted_at"]), wall_seconds=r["wall_seconds"],
                 active_seconds=r["active_seconds"]) for r in rows["reads"]], batch_size=1000)
        ReadEvent.objects.bulk_create([
            ReadEvent(read_id=e["read"], kind=e["kind"], tab_id=e["tab"], server_time=parse(e["server_time"]))
            for e in rows["reading_events"]], batch_size=2000)
        flags: dict[int, dict] = {}
        for c in rows["reader_calls"]:
            flags.setdefault(c["read"], {})[c["finding"]] = bool(c["call"])
        Report.objects.bulk_create([
            Report(read_id=r["read"], version=1, findings=r["findings"], impression=r["impression"],
                   finding_flags=flags[r["read"]], author=admin, created_at=parse(r["created_at"]),
                   draft_kept_share=r["draft_kept_share"], draft_edit_distance=r["draft_edit_distance"])
            for r in rows["reports"]], batch_size=1000)
    Trial.objects.filter(pk=trial.pk).update(status=Status.LOCKED)
    trial.refresh_from_db()
    return trial, statistician


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--experts", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="whole runs timed (the median is reported)")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--skip-r", action="store_true", help="do not run the LMM comparison with R")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cxr_bench_stats_") as folder:
        _setup_django(folder)
        import stats_lmm  # bench/stats_lmm.py: the same simulated reads, and the R comparison

        from scoring import selectors as scoring_selectors
        from stats import plan as plan_schema
        from stats import report, selectors, services, simulate
        from stats.models import AnalysisRun
        from trial import signatures

        t0 = time.perf_counter()
        facts, rows = simulate.simulate_rows(n_readers=args.readers, n_cases=args.cases, n_experts=args.experts,
                                             seed=args.seed)
        trial, statistician = build_trial(rows, facts, args.experts)
        scoring = _to_scoring_format(rows)
        scoring_selectors.analysis_rows = lambda t, **kw: scoring  # scoring's rows, as its analysis_rows gives them
        setup = time.perf_counter() - t0
        plan = services.create_plan_version(trial=trial, by=statistician, content=plan_schema.default_plan())
        services.freeze_plan(plan=plan, by=statistician,
                             proof=signatures.simulated(statistician, by_what="the benchmark"))
        n_reads = len(rows["reads"])
        print(f"paired-parallel trial: {args.readers} readers x {args.cases} cases = {n_reads} reads, "
              f"{len(rows['quality_scores'])} quality scores, {len(rows['preferences'])} preference votes, "
              f"{len(rows['reader_calls'])} reader calls, {len(rows['reading_events'])} reading events "
              f"(built in {setup:.1f} s)")

        durations, run = [], None
        for _ in range(args.repeats):
            run = services.start_run(trial=trial, by=statistician)  # on_commit never fires outside a request:
            start = time.perf_counter()                              # the run is executed here, timed
            run = services.execute_run(run_id=run.pk, task_id=f"bench-{run.number}")
            durations.append(time.perf_counter() - start)
            if run.status != "done":
                print("run failed:", run.error, file=sys.stderr)
                return 1
        stages = run.results["analyses"]
        print()
        print(f"whole analysis run (execute_run: DB rows → snapshot + SHA-256 → every analysis → stored): "
              f"median {statistics.median(durations):.2f} s of {len(durations)} "
              f"({', '.join(f'{d:.2f}' for d in durations)}); goal < 10 s")
        print(f"  dataset SHA-256 {run.dataset_sha256[:16]}…, {sum(run.dataset_rows.values())} rows; "
              f"{sum(a['status'] == 'ok' for a in stages.values())} of {len(stages)} analyses estimable")
        # where the time goes, one pass each
        from stats import analysis, dataset

        t = time.perf_counter()
        facts2, rows2 = selectors.dataset_rows(trial)
        t_rows = time.perf_counter() - t
        t = time.perf_counter()
        snapshot = dataset.build_snapshot(trial=facts2, rows=rows2)
        data = dataset.snapshot_bytes(snapshot)
        dataset.sha256(data)
        t_snap = time.perf_counter() - t
        step_times: dict[str, float] = {}
        last = [time.perf_counter(), "start"]

        def progress(pct, stage):
            now = time.perf_counter()
            step_times[last[1]] = now - last[0]
            last[0], last[1] = now, stage

        t = time.perf_counter()
        analysis.run_analysis(dataset.coded(snapshot, run.arm_mapping), plan=plan.content, design=facts2["design"],
                              findings=facts2["findings"], progress=progress)
        t_analysis = time.perf_counter() - t
        print(f"  reading the rows from the database {t_rows:.2f} s; snapshot + hash {t_snap:.2f} s "
              f"({len(data) / 1e6:.1f} MB); analyses {t_analysis:.2f} s")
        for stage, seconds in sorted(step_times.items(), key=lambda kv: -kv[1])[:6]:
            print(f"    {seconds:6.2f} s  {stage}")

        t = time.perf_counter()
        _, zipped = services.export_run(run=run, by=statistician)
        t_export = time.perf_counter() - t
        results = selectors.visible_results(run)
        t = time.perf_counter()
        report.plots(results, labels=selectors.arm_labels(run))
        t_plots = time.perf_counter() - t
        print(f"export zip (CSV, XLSX, SPSS, Stata, dictionary): {t_export:.2f} s, {len(zipped) / 1e6:.1f} MB; "
              f"report plots: {t_plots:.2f} s")
        print(f"runs stored: {AnalysisRun.objects.count()}")

        status = 0
        if not args.skip_r:
            print()
            print("crossed LMM on the same reads, ours vs R lme4 + lmerTest (bench/stats_lmm.py):")
            sys.stdout.flush()
            argv = sys.argv
            sys.argv = ["stats_lmm.py", "--readers", str(args.readers), "--cases", str(args.cases),
                        "--seed", str(args.seed)]
            try:
                status = stats_lmm.main()
            finally:
                sys.argv = argv
    goal = statistics.median(durations) < 10
    return 0 if goal and status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
