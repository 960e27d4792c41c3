"""The reading steps' hot reads, side by side: what reading.selectors runs, and the same read through the ORM.

Run by hand from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

    python bench/reading_selects.py [--reads 30] [--repeats 7] [--n 300]

A throwaway database gets one paired-parallel trial (bench/_reading_world.py); then, alternating in rounds so
that the machine's noise falls on both, the CPU time of this process per call (the minimum over the rounds) of:
- a reader's own read with its trial, case and saved text, and its availability check (reading.selectors.own_read),
  and the same under the read's row lock (locked_own_read), against `Read.objects.filter(...).select_related(...)`
  followed by the same check;
- the reader's worklist rows (id, status, arm, availability, case code, whether the draft is ready), against the
  same through the ORM's annotate(Exists(...)).values_list(...).
It prints the ratio ORM / ours for each: the evidence core.db's docstring cites for keeping these two reads
hand-written.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=30, help="reads per reader (the worklist's length)")
    parser.add_argument("--repeats", type=int, default=7, help="rounds (the minimum is reported)")
    parser.add_argument("--n", type=int, default=300, help="calls per round")
    parser.add_argument("--db", default="cxr_bench_selects")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="cxr-bench-selects-")
    os.environ.update({
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{args.db}?conn_max_age=60",
        "DJANGO_SETTINGS_MODULE": "config.settings", "CXR_DEVELOPMENT": "1", "CXR_VAR_DIR": f"{tmp}/var",
        "CXR_MEDIA_ROOT": f"{tmp}/media",
        "CELERY_TASK_ALWAYS_EAGER": "1", "DJANGO_DEBUG": "0"})
    os.environ.pop("CACHE_URL", None)
    from bench import _reading_world as world_mod

    world_mod.create_database(host="127.0.0.1", port=5432, user="postgres", name=args.db)
    try:
        import django

        django.setup()
        import logging

        logging.getLogger("celery").setLevel(logging.WARNING)
        from django.contrib.auth import get_user_model
        from django.db import connections, transaction
        from django.db.models import BooleanField, Case, Exists, F, OuterRef, Q, Value, When

        from ai.models import AIDraft, DraftStatus
        from reading import selectors
        from reading.models import Read, ReadStatus
        from trial.models import Arm, Role

        world_mod.migrate()
        world = world_mod.build(readers=4, cases=2 * args.reads, distinct_images=4, log=lambda *a: None)
        user = get_user_model().objects.get(username=world.readers[0])
        read_id = world.reads[user.username][0]
        reader_id = Read.objects.get(pk=read_id).reader_id

        # the same work as ours: the read with its trial and case (and its saved text), then the availability check
        def orm_read():
            read = (Read.objects.filter(pk=read_id, reader__user_id=user.pk, reader__role=Role.READER)
                    .select_related("trial", "case", "saved").first())
            selectors.require_available(read)
            return read

        def orm_locked():
            with transaction.atomic():
                read = (Read.objects.filter(pk=read_id, reader__user_id=user.pk, reader__role=Role.READER)
                        .select_related("trial", "case").select_for_update(of=("self",)).first())
                selectors.require_available(read)
                return read

        def ours_locked():
            with transaction.atomic():
                return selectors.locked_own_read(read_id=read_id, user=user)

        def orm_rows():
            ready = Case(When(Q(arm=Arm.ASSISTED, status=ReadStatus.ASSIGNED), then=Exists(AIDraft.objects.filter(
                case_id=OuterRef("case_id"), model_version__trials__trial_id=OuterRef("trial_id"),
                status=DraftStatus.READY))), default=Value(False), output_field=BooleanField())
            return list(Read.objects.filter(reader_id=reader_id).order_by("order_key")
                        .annotate(case_code=F("case__code"), ready=ready)
                        .values_list("id", "status", "arm", "available_from", "case_code", "ready"))

        pairs = {
            "own read with trial and case": (orm_read, lambda: selectors.own_read(read_id=read_id, user=user)),
            "the same under the read's lock": (orm_locked, ours_locked),
            f"worklist rows ({args.reads})": (orm_rows, lambda: selectors._rows(reader_id=reader_id)),
        }
        for orm, ours in pairs.values():
            for _ in range(30):
                orm(), ours()
        best = {name: [float("inf"), float("inf")] for name in pairs}
        for _ in range(args.repeats):
            for name, fns in pairs.items():
                for k, fn in enumerate(fns):
                    t0 = time.process_time()
                    for _ in range(args.n):
                        fn()
                    best[name][k] = min(best[name][k], (time.process_time() - t0) * 1000 / args.n)
        print(f"CPU ms per call, this process (minimum of {args.repeats} rounds of {args.n}):")
        print(f"  {'read':<34} {'ORM':>7} {'ours':>7} {'ORM / ours':>10}")
        for name, (orm_ms, ours_ms) in best.items():
            print(f"  {name:<34} {orm_ms:7.3f} {ours_ms:7.3f} {orm_ms / ours_ms:10.1f}")
        connections.close_all()
    finally:
        world_mod.drop_database(host="127.0.0.1", port=5432, user="postgres", name=args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
