"""The world of bench/reading.py: a throwaway PostgreSQL database and a paired-parallel trial in reading.

Made through the project's own services (as tests/reading/conftest.py `build_trial` does), in the bench
process; the caller sets DATABASE_URL (and the media/var folders) before importing this module.

For a baseline revision (bench/reading.py --baseline REV) this file also runs as a script, in a process of its own
with that revision's worktree first on sys.path: it migrates the revision's own database with the revision's own
migrations and builds the same world there through the revision's own services (see `main` below), so that every
server of a comparison runs against the schema its code was written for.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

PASSWORD = "bench-reader-password-1"
DRAFT_FINDINGS = "Small left pleural effusion. No pneumothorax."
DRAFT_IMPRESSION = "Small left pleural effusion."


def _admin(host: str, port: int, user: str):
    # psycopg is imported here, not at the top: a baseline revision that shipped with psycopg2 builds its world in a
    # process where psycopg 3 is hidden (bench/reading.py's --baseline-psycopg2), and never calls this
    import psycopg

    for attempt in range(60):  # a server restarted meanwhile comes back in seconds
        try:
            conn = psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True)
            break
        except psycopg.OperationalError:
            if attempt == 59:
                raise
            time.sleep(1)
    conn.autocommit = True
    return conn


def create_database(*, host: str, port: int, user: str, name: str) -> None:
    from psycopg import sql

    conn = _admin(host, port, user)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def drop_database(*, host: str, port: int, user: str, name: str) -> None:
    from psycopg import sql

    conn = _admin(host, port, user)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


@dataclass
class World:
    code: str
    readers: list[str]                                   # usernames, in membership order
    reads: dict[str, list[int]] = field(default_factory=dict)  # username -> read ids in worklist order
    seconds: float = 0.0


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def build(*, readers: int, cases: int, code: str = "bench", size: int = 256, distinct_images: int | None = None,
          log=print) -> World:
    """Users, a paired-parallel trial (blocks of 2, one site), `cases` cases with ready drafts, in reading.

    `distinct_images` (default: all): how many cases are enrolled through the services (validated, de-identified,
    rendered); the others are copies of them under new codes, pointing at the same image files (a world of thousands
    of cases in seconds: the reading steps read the files, they never write them)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Permission

    from ai.models import AIDraft, DraftStatus, ModelVersion, TrialModel
    from config.celery import app
    from reading import services as reading_services
    from reading.models import Read
    from trial import services as trial_services
    from trial.models import Case, Role, Trial

    FINDINGS, make_phantom = _phantoms()
    app.conf.task_always_eager = True
    t0 = time.perf_counter()
    User = get_user_model()
    encoded = make_password(PASSWORD)  # one hash for all: hashing once per reader would only slow the set-up
    investigator = User.objects.create(username="bench-investigator", email="inv@example.org", password=encoded)
    investigator.user_permissions.add(Permission.objects.get(codename="add_trial"))
    investigator = User.objects.get(pk=investigator.pk)
    names = [f"bench-reader{i:04d}" for i in range(readers)]
    users = User.objects.bulk_create([User(username=n, email=f"{n}@example.org", password=encoded) for n in names])

    options = {"block_multiples": [1]}
    # a single block size needs a stated reason since bd43a88; an older revision's trial has no such field (and its
    # create_trial refuses an unknown setting), so the reason is given only where the model has it
    if any(f.name == "fixed_block_reason" for f in Trial._meta.get_fields()):
        options["fixed_block_reason"] = "a block of 2 keeps every site in both arms"
    trial = trial_services.create_trial(by=investigator, code=code, title="Reading benchmark", design="paired_parallel",
                                        **options)
    site = trial_services.add_site(trial=trial, by=investigator, code="site-a", name="Site A")
    for i, user in enumerate(users):
        trial_services.add_member(trial=trial, by=investigator, user=user, role=Role.READER, site=site)
        if (i + 1) % 200 == 0:
            log(f"  {i + 1}/{readers} readers added ({time.perf_counter() - t0:.0f} s)")
    trial = trial_services.transition_trial(trial=trial, by=investigator, to="enrolling")
    t1 = time.perf_counter()
    distinct = min(cases, distinct_images or cases)
    enrolled = []
    for i in range(distinct):
        findings = [FINDINGS[i % len(FINDINGS)]] if i % 3 else []
        data = make_phantom(findings=findings, seed=i, size=size).dicom
        enrolled.append(trial_services.enrol_case(trial=trial, site=site, by=investigator, data=data,
                                                  clinical_history=f"Benchmark case {i}"))
        if (i + 1) % 50 == 0:
            log(f"  enrolled {i + 1}/{distinct} cases ({time.perf_counter() - t1:.0f} s)")
    if cases > distinct:
        originals = list(Case.objects.filter(pk__in=[c.pk for c in enrolled]))
        copies = []
        for i in range(distinct, cases):
            copy = Case(**{f.attname: getattr(originals[i % distinct], f.attname)
                           for f in Case._meta.concrete_fields if not f.primary_key})
            copy.code, copy.source_fingerprint = f"C{i + 1:05d}", f"bench-copy-{i}"
            copies.append(copy)
        enrolled += Case.objects.bulk_create(copies, batch_size=1000)
        log(f"  {cases - distinct} more cases as copies of those ({time.perf_counter() - t1:.0f} s)")
    # The model is attached after enrolment so that no model runs: drafts are written directly.
    model = ModelVersion.objects.create(name=f"bench-{code}", backend="http", url="http://127.0.0.1:9/v1")
    TrialModel.objects.create(trial=trial, model_version=model, assigned_by=investigator)
    AIDraft.objects.bulk_create([
        AIDraft(case=case, model_version=model, status=DraftStatus.READY, findings=DRAFT_FINDINGS,
                impression=DRAFT_IMPRESSION, text=f"FINDINGS: {DRAFT_FINDINGS}\nIMPRESSION: {DRAFT_IMPRESSION}",
                finding_scores={"pleural effusion": 0.9})
        for case in enrolled], batch_size=1000)
    trial = trial_services.transition_trial(trial=trial, by=investigator, to="reading")
    reading_services.route_trial(trial=trial)  # routing runs on commit (eager Celery); make sure it happened
    world = World(code=code, readers=names)
    for name, read_id in (Read.objects.filter(trial=trial).order_by("reader_id", "order_key")
                          .values_list("reader__user__username", "id")):
        world.reads.setdefault(name, []).append(read_id)
    world.seconds = time.perf_counter() - t0
    return world


def _phantoms():
    """(FINDINGS, make_phantom) of the running revision: demo/phantoms since the demo app (issue 12), ai/phantoms.py
    before. ai.phantoms is tried first on purpose: the project is installed editable, so `import demo` would find
    this checkout's demo app even in a baseline revision that has none (an import from the wrong tree), whereas
    `ai.phantoms` is looked up inside whichever `ai` package the revision's tree provides."""
    try:
        from ai.phantoms import FINDINGS, make_phantom
    except ImportError:
        from demo.phantoms import FINDINGS, make_phantom
    return FINDINGS, make_phantom


def sessions(usernames: list[str], backend: str = "django.contrib.auth.backends.ModelBackend") -> dict[str, str]:
    """A signed-in session per user (session key by username), written as a login through `backend` would write it
    (to the database and, with cached_db, the cache): thousands of simulated readers sign in without hashing a
    password each. `backend`: the first of the serving revision's AUTHENTICATION_BACKENDS, so that each revision
    loads the signed-in user as it would in production (an older one from its user cache)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.base import SessionBase
    from django.utils.module_loading import import_string

    store: type[SessionBase] = import_string(settings.SESSION_ENGINE + ".SessionStore")
    out = {}
    for user in get_user_model().objects.filter(username__in=usernames):
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = backend
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        out[user.username] = session.session_key
    return out


def main() -> int:
    """Build the world of one revision in its own database: `python bench/_reading_world.py --root TREE --out FILE …`,
    run by bench/reading.py with the revision's worktree as the working directory and that revision's server
    environment (DATABASE_URL of an empty database, CXR_VAR_DIR, CXR_MEDIA_ROOT, CACHE_URL, PYTHONPATH). Migrates
    with the revision's migrations, collects its static files, builds the world with its services, signs the readers
    in as its first authentication backend would, and writes the world and the session keys as JSON."""
    import argparse
    import json
    import logging
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the revision's worktree")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--readers", type=int, required=True)
    parser.add_argument("--cases", type=int, required=True)
    parser.add_argument("--distinct-images", type=int)
    parser.add_argument("--sessions", type=int, required=True, help="sign in the first N readers")
    args = parser.parse_args()
    # Run as a script, this file's folder is sys.path[0]: its modules (bench/stats.py…) would shadow the apps of the
    # same name, and this checkout's apps would come next through the editable install. The revision's tree takes that
    # place, so that settings, apps, models, services and migrations are all the revision's own.
    sys.path[0] = str(Path(args.root).resolve())
    import django

    django.setup()
    logging.getLogger("celery").setLevel(logging.WARNING)  # eager tasks of the set-up: no line each
    logging.getLogger("trial.audit.anchor").setLevel(logging.WARNING)  # a line per commit while building
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    t0 = time.perf_counter()
    migrate()
    call_command("collectstatic", interactive=False, verbosity=0)  # DEBUG off: WhiteNoise serves STATIC_ROOT
    print(f"  migrated with the revision's migrations ({time.perf_counter() - t0:.0f} s)", flush=True)
    world = build(readers=args.readers, cases=args.cases, distinct_images=args.distinct_images,
                  log=lambda line: print(line, flush=True))
    keys = sessions(world.readers[:args.sessions], backend=settings.AUTHENTICATION_BACKENDS[0])
    connections.close_all()
    Path(args.out).write_text(json.dumps({"code": world.code, "readers": world.readers, "reads": world.reads,
                                          "sessions": keys, "seconds": world.seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
