"""`make demo`: a trial with results and a live trial to try by hand, one login per role (idempotent).

The drafts are written by the demo model through the Celery worker (started by scripts/run-demo.sh
before this command). Long steps show progress.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count
from tqdm import tqdm

from ai import selectors as ai_selectors
from ai import services as ai_services
from ai.models import ModelVersion
from core.clock import simulated as simulated_clock
from demo import arrivals
from demo import simulation as demo
from reading.models import Read
from scoring.models import Item
from stats import services as stats_services
from stats.models import AnalysisRun
from stats.plan import default_plan
from trial import services, signatures
from trial.access import access_to
from trial.models import Mode, Role, Status, Trial

PASSWORD = "demo-password-2026"
RESULTS, LIVE = "demo-cxr-results", "demo-cxr"
SITES = [("site-a", "Hospital A"), ("site-b", "Hospital B"), ("site-c", "Hospital C")]
MODEL_NAME = "demo-janus-phantoms"


class Command(BaseCommand):
    help = "Create the demo trials, users and demo model (once), then print the address and one login per role."

    def add_arguments(self, parser):
        parser.add_argument("--cases", type=int, default=60, help="cases of the trial with results")
        parser.add_argument("--live-cases", type=int, default=18, help="cases of the live trial")
        parser.add_argument("--untrained-model", action="store_true",
                            help="use a tiny untrained model (seconds) instead of training the demo model (minutes)")
        parser.add_argument("--timeout", type=int, default=3600, help="seconds to wait for the worker's steps")

    def handle(self, *args, cases, live_cases, untrained_model, timeout, **options):
        self.timeout = timeout
        self._bars: dict[str, tqdm] = {}
        users = self._users()
        model = self._model(users["admin"], untrained=untrained_model)
        if not Trial.objects.filter(code=RESULTS).exists():
            self._results_trial(users, model, cases)
        if not Trial.objects.filter(code=LIVE).exists():
            self._live_trial(users, model, live_cases)
        self._close_bars()
        self._print_logins()

    # ------------------------------------------------------------------------------------------ pieces

    def progress(self, what: str, done: int, total: int) -> None:
        bar = self._bars.get(what)
        if bar is None:
            bar = self._bars[what] = tqdm(total=total, desc=what, unit="", file=sys.stderr, leave=True)
        bar.total = total
        bar.n = done
        bar.refresh()

    def _labelled(self, trial):
        return lambda what, done, total: self.progress(f"{trial.code}: {what}", done, total)

    def _close_bars(self):
        for bar in self._bars.values():
            bar.close()
        self._bars = {}

    def _users(self) -> dict:
        User = get_user_model()
        hashed = make_password(PASSWORD)  # once: the hasher is slow on purpose
        names = ["investigator", "admin", "senior", "statistician"] + [f"reader{i}" for i in range(1, 7)] + \
                [f"expert{i}" for i in range(1, 6)]
        out = {}
        for name in names:
            user = User.objects.filter(username=name).first() or User.objects.create(
                username=name, email=f"{name}@demo.invalid", password=hashed,
                is_staff=name == "admin", is_superuser=name == "admin")
            out[name] = user
        out["investigator"].user_permissions.add(Permission.objects.get(codename="add_trial"))
        out["investigator"] = User.objects.get(pk=out["investigator"].pk)
        return out

    def _model(self, admin, *, untrained: bool) -> ModelVersion:
        existing = ModelVersion.objects.filter(name=MODEL_NAME).first()
        if existing is not None:
            return existing
        from demo import model as demo_model

        # "-v2": the finding-guided recipe; a model cached by an earlier recipe is not reused
        path = Path(settings.VAR_DIR) / "models" / ("demo-janus-untrained" if untrained else "demo-janus-v2")
        if not (path / "config.json").exists():
            if untrained:
                demo_model.build_tiny_model(path)
            else:
                self.stdout.write("Training the demo model on synthetic radiographs (once, at most 15 minutes) …")
                bars: dict[str, tqdm] = {}

                def progress(stage: str, fraction: float, line: str) -> None:
                    bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=100, desc=stage, file=sys.stderr))
                    bar.n = round(100 * fraction)
                    bar.set_postfix_str(line[-60:])
                    bar.refresh()

                demo_model.train_demo_model(path, progress=progress)
                for bar in bars.values():
                    bar.close()
        self.stdout.write("Registering the demo model (loads it once) …")
        return ai_services.register_model(
            by=admin, name=MODEL_NAME, backend="janus", path=str(path), is_demo=True,
            # an untrained model rambles until the limit: keep its drafts short
            generation={"max_new_tokens": 24} if untrained
            else {**demo_model.GUIDED.to_dict(), "max_new_tokens": 160},
            description="Demo model trained on synthetic phantoms by demo/model.py. Never for clinical use.")

    def _trial(self, users, model, *, code: str, title: str, **options) -> tuple[Trial, list]:
        inv = users["investigator"]
        # every report checked by a senior before release, as in the paper
        trial = services.create_trial(by=inv, code=code, title=title, registration_id="NCT00000000 (demo)",
                                      block_multiples=[1], require_signoff=True,
                                      fixed_block_reason="two readers per site: a block of 2 keeps every site in "
                                                         "both arms", **options)
        sites = [services.add_site(trial=trial, by=inv, code=c, name=n) for c, n in SITES]
        for i in range(6):  # two readers per site, randomized 1:1 within site
            services.add_member(trial=trial, by=inv, user=users[f"reader{i + 1}"], role=Role.READER,
                                site=sites[i // 2])
        services.add_member(trial=trial, by=inv, user=users["senior"], role=Role.SENIOR)
        for i in range(5):
            services.add_member(trial=trial, by=inv, user=users[f"expert{i + 1}"], role=Role.EXPERT)
        services.add_member(trial=trial, by=inv, user=users["statistician"], role=Role.STATISTICIAN)
        ai_services.assign_model(trial=trial, by=inv, model_version=model)
        trial = services.transition_trial(trial=trial, by=inv,
                                          to=Status.OPEN if trial.is_prospective else Status.ENROLLING)
        return trial, sites

    def _enrol_and_draft(self, trial, sites, inv, count: int, seed: int, *, real_film: bool) -> dict:
        truth = demo.enrol_phantoms(trial=trial, sites=sites, by=inv, count=count, seed=seed,
                                    enrol=services.enrol_case)
        if real_film:
            from pydicom.data import get_testdata_file

            with open(get_testdata_file("RG1_UNCR.dcm", download=False), "rb") as fh:
                services.enrol_case(trial=trial, site=sites[0], by=inv, data=fh.read(), filename="RG1_UNCR.dcm",
                                    clinical_history="Cough and fever for three days.")

        self._wait_for_drafts(trial, inv)
        return truth

    def _wait_for_drafts(self, trial, inv) -> None:
        def drafts():
            p = ai_selectors.draft_progress(access=access_to(user=inv, trial=trial))
            if p["failed"]:
                raise CommandError(f"{p['failed']} drafts failed; see the AI drafts page of {trial.code}.")
            return p["ready"], p["total"]

        demo.wait_for(drafts, what=f"{trial.code}: AI drafts by the worker", timeout=self.timeout,
                      progress=self.progress)

    def _start_reading(self, trial, inv):
        trial = services.transition_trial(trial=trial, by=inv, to=Status.READING)
        n_cases = trial.cases.count()
        demo.wait_for(lambda: (Read.objects.filter(trial=trial).values("case").distinct().count(), n_cases),
                      what=f"{trial.code}: cases routed to worklists", timeout=self.timeout, progress=self.progress)
        return trial

    def _read_trial(self, users, model, *, code: str, title: str, n_cases: int, seed: int, real_film: bool,
                    leave_per_reader: int):
        """Both demo trials up to their simulated reading: created, enrolled, drafted, routed, read."""
        inv = users["investigator"]
        trial, sites = self._trial(users, model, code=code, title=title)
        truth = self._enrol_and_draft(trial, sites, inv, n_cases, seed=seed, real_film=real_film)
        trial = self._start_reading(trial, inv)
        clock = demo.start_clock()
        demo.simulate_reading(trial=trial, truth=truth, leave_per_reader=leave_per_reader, seed=seed + 1,
                              clock=clock, progress=self._labelled(trial))
        demo.simulate_signoff(trial=trial, leave=2 if leave_per_reader else 0, seed=seed + 2, clock=clock,
                              progress=self._labelled(trial))
        return trial, truth, clock

    def _results_trial(self, users, model, n_cases: int):
        inv = users["investigator"]
        trial, truth, clock = self._read_trial(
            users, model, code=RESULTS, title="Demo with results: AI-assisted chest radiograph reporting",
            n_cases=n_cases, seed=11, real_film=False, leave_per_reader=0)
        trial = services.transition_trial(trial=trial, by=inv, to=Status.SCORING)
        demo.wait_for(lambda: (int(Item.objects.filter(trial=trial).exists()), 1),
                      what=f"{trial.code}: scoring items built by the worker", timeout=self.timeout,
                      progress=self.progress)
        demo.simulate_scoring(trial=trial, truth=truth, leave_per_expert=0, seed=13, clock=clock,
                              progress=self._labelled(trial))
        statistician = users["statistician"]
        plan = stats_services.save_plan(trial=trial, by=statistician, content=default_plan(trial.design))
        stats_services.freeze_plan(plan=plan, by=statistician,
                                   proof=signatures.simulated(statistician, by_what="the demo"))
        trial = services.lock_trial(trial=trial, by=inv, proof=signatures.simulated(inv, by_what="the demo"))
        services.request_unblinding(trial=trial, by=inv, proof=signatures.simulated(inv, by_what="the demo"))
        trial = services.approve_unblinding(trial=trial, by=statistician,
                                            proof=signatures.simulated(statistician, by_what="the demo"))
        run = stats_services.start_run(trial=trial, by=users["statistician"])
        demo.wait_for(lambda: (int(AnalysisRun.objects.get(pk=run.pk).status in ("done", "failed")), 1),
                      what=f"{trial.code}: analysis run by the worker", timeout=self.timeout, progress=self.progress)
        run.refresh_from_db()
        if run.status != "done":
            raise CommandError(f"The demo analysis failed: {run.error}")

    def _live_trial(self, users, model, n_cases: int):
        """A prospective trial, open: the films of the last hours arrived (a few not eligible), were routed at once,
        drafted, read, signed and scored as they came, a few left on each list for you; scripts/run-demo.sh then
        keeps films arriving (manage.py simulate_arrivals) while you watch."""
        inv = users["investigator"]
        trial, sites = self._trial(users, model, code=LIVE, title="Demo to try: a prospective trial, open",
                                   mode=Mode.PROSPECTIVE, flag_urgency=True, read_window_hours=24,
                                   target_cases=400, close_at_target=True)
        # each site's PACS may send films to the DICOM listener (scripts/run-demo.sh starts it)
        for site, title in zip(sites, ("PACS_A", "PACS_B", "PACS_C"), strict=True):
            services.set_site_dicom_senders(site=site, by=inv, ae_titles=[title])
        clock = demo.start_clock()
        rng = np.random.default_rng(21)
        truth: dict[str, demo.Phantom] = {}
        with simulated_clock(clock):
            for i in range(n_cases + n_cases // 6):  # about one in ten not eligible (screening log)
                arrival = arrivals.arrive(trial=trial, rng=rng, seed=21_000 + i, ineligible_share=0.1)
                if arrival.case is not None:
                    truth[arrival.case.code] = demo.Phantom(dict(arrival.phantom.labels), arrival.phantom.report.text)
                clock.advance(rng.exponential(900))  # about four films an hour across the three sites
                self.progress(f"{trial.code}: films arrived", i + 1, n_cases + n_cases // 6)
        self._wait_for_drafts(trial, inv)
        demo.simulate_reading(trial=trial, truth=truth, leave_per_reader=2, seed=22, clock=clock,
                              progress=self._labelled(trial))
        demo.simulate_signoff(trial=trial, leave=2, seed=24, clock=clock, progress=self._labelled(trial))
        # the worker builds each case's expert items once both its reports are signed
        signed_both = (Read.objects.filter(trial=trial, reports__signed_at__isnull=False).values("case")
                       .annotate(n=Count("id", distinct=True)).filter(n=2).count())
        demo.wait_for(lambda: (Item.objects.filter(trial=trial, kind="pair").count(), signed_both),
                      what=f"{trial.code}: scoring items built by the worker as reports are signed",
                      timeout=self.timeout, progress=self.progress)
        demo.simulate_scoring(trial=trial, truth=truth, leave_per_expert=3, seed=23, clock=clock,
                              progress=self._labelled(trial))

    def _print_logins(self):
        self.stdout.write(self.style.SUCCESS(
            f"\nDemo ready. Trials: {RESULTS} (complete, unblinded, with its analysis report) and "
            f"{LIVE} (prospective, open: films keep arriving every few seconds to a minute while the server runs; "
            "a few cases wait for you on each worklist; the investigator's Conduct page shows the screening log)."))
        self.stdout.write(f"Logins (password for all: {PASSWORD}):")
        for username, role in [("investigator", "investigator"), ("reader1", "reader (site-a)"),
                               ("reader2", "reader (site-a)"), ("senior", "senior (sign-off)"),
                               ("expert1", "expert"), ("statistician", "statistician"), ("admin", "staff admin")]:
            self.stdout.write(f"  {role:<20} {username}")
