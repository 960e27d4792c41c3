"""Two tabs of one read writing at the same moment: the second waits for the first's lock and then sees its text
(409 with the newer text), never a server error and never a silent overwrite."""
from __future__ import annotations

import threading

import pytest
from django.db import connections

from reading import services
from reading.models import Read, ReportDraft


def _race(read, user, monkeypatch, first_base, second_base):
    """Tab A takes the read's lock and pauses inside its transaction; tab B starts its save then (it waits for
    the lock); A commits; B goes on. Returns what each tab got."""
    holding, release = threading.Event(), threading.Event()
    original = services._require_reading

    def pause_in_a(trial):
        original(trial)
        if threading.current_thread().name == "A":
            holding.set()
            release.wait(10)

    monkeypatch.setattr(services, "_require_reading", pause_in_a)
    out = {}

    def tab(name, base):
        try:
            saved = services.autosave(read_id=read.pk, by=user, findings=f"text of {name}",
                                      impression=name, finding_flags={}, base_version=base, tab_id=name)
            out[name] = ("saved", saved.version)
        except services.StaleVersion as exc:
            out[name] = ("stale", exc.current.version)
        except Exception as exc:  # noqa: BLE001 - the test says which
            out[name] = (type(exc).__name__, str(exc)[:200])
        finally:
            connections.close_all()

    a = threading.Thread(target=tab, args=("A", first_base), name="A")
    b = threading.Thread(target=tab, args=("B", second_base), name="B")
    a.start()
    assert holding.wait(10)
    b.start()
    b.join(0.5)  # B is now waiting for A's lock (or, on SQLite, for the database's write lock)
    release.set()
    a.join(10)
    b.join(10)
    return out


@pytest.mark.django_db(transaction=True)
def test_two_tabs_saving_first_at_once(build_trial, monkeypatch):
    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial, arm="standard").select_related("reader__user").first()
    out = _race(read, read.reader.user, monkeypatch, None, None)
    assert out == {"A": ("saved", 1), "B": ("stale", 1)}, out
    assert list(ReportDraft.objects.filter(read=read).values_list("tab_id", "version")) == [("A", 1)]


@pytest.mark.django_db(transaction=True)
def test_a_tab_behind_cannot_overwrite_a_newer_text_it_waited_for(build_trial, monkeypatch):
    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial, arm="standard").select_related("reader__user").first()
    user = read.reader.user
    services.autosave(read_id=read.pk, by=user, findings="v1", impression="v1", finding_flags={}, base_version=None,
                      tab_id="A")
    out = _race(read, user, monkeypatch, 1, 1)  # both tabs start from version 1
    assert out == {"A": ("saved", 2), "B": ("stale", 2)}, out
    assert ReportDraft.objects.get(read=read).findings == "text of A"
