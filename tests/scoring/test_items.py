"""Building the scoring items: when, how many, for whom, in which order, on which side."""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from reading import services as reading_services
from reading.models import Read, Report
from scoring import selectors, services
from scoring.models import Assignment, Item, ShownReport
from tests.scoring.conftest import add_experts, submit_all_reads
from tests.signing import move, proof
from trial import services as trial_services
from trial.access import access_to
from trial.models import AuditEvent, Role


def test_paired_trial_gets_quality_pair_and_findings_items_for_each_case_when_it_moves_to_scoring(scoring_trial):
    trial, _, experts, cases = scoring_trial(n_cases=4)
    items = Item.objects.filter(trial=trial)
    assert Counter(items.values_list("kind", flat=True)) == {"reference": 4, "quality": 8, "pair": 4}
    for item in items.filter(kind="pair"):
        assert sorted(item.shown_reports.values_list("arm", flat=True)) == ["assisted", "standard"]
    # one quality item per final report: latest version, with its hash
    shown = ShownReport.objects.filter(item__kind="quality")
    assert shown.count() == Report.objects.filter(read__trial=trial).count() == 8
    assert all(len(s.text_hash) == 64 and s.report_version == 1 for s in shown)
    assert Assignment.objects.filter(item__trial=trial).count() == 16 * 5
    assert AuditEvent.objects.filter(action="scoring.items_built").count() == 1


def test_building_again_makes_nothing_new(scoring_trial, investigator):
    trial, *_ = scoring_trial(n_cases=3)
    before = Item.objects.count(), Assignment.objects.count()
    result = services.build_items(trial=trial, by=investigator)
    assert result.total == 0 and result.superseded == 0
    assert (Item.objects.count(), Assignment.objects.count()) == before


def test_building_is_refused_with_fewer_experts_than_the_trial_needs(scoring_trial, investigator):
    trial, *_ = scoring_trial(n_experts=3, move=False)
    with pytest.raises(services.NotEnoughExperts, match="needs 5 experts per item .* has 3 eligible experts"):
        services.build_items(trial=trial, by=investigator)
    assert not Item.objects.exists() and not Assignment.objects.exists()


def test_moving_to_scoring_with_too_few_experts_keeps_the_status_and_says_why(scoring_trial):
    trial, *_ = scoring_trial(n_experts=2)
    assert trial.status == "scoring" and not Item.objects.exists()
    refused = AuditEvent.objects.get(action="scoring.build_refused")
    assert "has 2 eligible experts" in refused.payload["reason"]


def test_an_expert_holding_another_role_is_never_on_a_panel(scoring_trial, investigator, make_user):
    trial, readers, experts, _ = scoring_trial(n_experts=5, move=False)
    trial_services.add_member(trial=trial, by=investigator, user=experts[0], role=Role.SENIOR)
    with pytest.raises(services.NotEnoughExperts, match="Not eligible because they hold another role .*: E01"):
        services.build_items(trial=trial, by=investigator)
    add_experts(trial, investigator, make_user, 1, prefix="extra")
    services.build_items(trial=trial, by=investigator)
    assert not Assignment.objects.filter(expert__user=experts[0]).exists()


def test_items_are_built_per_case_only_once_every_report_of_the_case_is_final(scoring_trial, investigator, make_user):
    trial, readers, experts, cases = scoring_trial(n_cases=2, move=False, code="sg")
    trial.require_signoff = True
    trial.save(update_fields=["require_signoff"])
    senior = make_user("senior-sg")
    trial_services.add_member(trial=trial, by=investigator, user=senior, role=Role.SENIOR)
    assert services.build_items(trial=trial, by=investigator).total == 0
    first = Report.objects.filter(read__case=cases[0]).order_by("id")
    reading_services.sign_report(report=first[0], by=senior, proof=proof(senior))
    assert services.build_items(trial=trial, by=investigator).total == 0  # one arm signed is not enough
    reading_services.sign_report(report=first[1], by=senior, proof=proof(senior))
    assert services.build_items(trial=trial, by=investigator).created == {"reference": 1, "quality": 2, "pair": 1}
    assert set(Item.objects.values_list("case_id", flat=True)) == {cases[0].pk}


def test_a_larger_pool_of_experts_gets_balanced_panels_and_a_case_keeps_its_panel(scoring_trial):
    trial, _, experts, cases = scoring_trial(n_experts=7, experts_per_item=3, n_cases=14, code="bp")
    panels = defaultdict(set)
    for case_id, expert_id in Assignment.objects.values_list("item__case_id", "expert_id"):
        panels[case_id].add(expert_id)
    assert all(len(p) == 3 for p in panels.values())  # every item of a case: the same three experts
    loads = Counter(e for p in panels.values() for e in p)
    assert len(loads) == 7 and max(loads.values()) - min(loads.values()) <= 1  # 42 places over 7 experts
    for item in Item.objects.all():
        assert set(item.assignments.values_list("expert_id", flat=True)) == panels[item.case_id]


def test_the_adjudicator_stays_off_panels_when_there_are_enough_other_experts(scoring_trial, investigator):
    trial, _, experts, _ = scoring_trial(n_experts=6, move=False, code="ad")
    adjudicator = trial.memberships.get(user=experts[5], role=Role.EXPERT)
    services.update_settings(trial=trial, by=investigator, adjudicator=adjudicator)
    services.build_items(trial=trial, by=investigator)
    assert Assignment.objects.exists() and not Assignment.objects.filter(expert=adjudicator).exists()


def test_order_is_random_per_expert_and_stored(scoring_trial):
    trial, _, experts, _ = scoring_trial(n_cases=6, code="or")
    access = access_to(user=experts[0], trial=trial)
    first = [r.key for r in selectors.worklist(access=access).rows]
    assert first == [r.key for r in selectors.worklist(access=access).rows]
    keys = list(Assignment.objects.filter(expert__user=experts[0]).values_list("order_key", flat=True))
    assert len(set(keys)) == len(keys) == 24
    # the same items (by unit) in different orders for different experts, within each phase
    orders = []
    for user in experts:
        rows = Assignment.objects.filter(expert__user=user, item__kind="quality").order_by("order_key")
        orders.append([a.item_id for a in rows])
    assert len({tuple(o) for o in orders}) > 1
    # phases: every findings item before every quality item before every pair
    kinds = [r.kind for r in selectors.worklist(access=access).rows]
    assert kinds == sorted(kinds, key=["reference", "quality", "pair"].index)


def test_pair_sides_are_random_and_balanced_per_expert(scoring_trial):
    trial, _, experts, _ = scoring_trial(n_cases=30, code="sd", readers_per_site=2)
    per_expert = defaultdict(list)
    for a in Assignment.objects.filter(item__kind="pair").order_by("order_key"):
        per_expert[a.expert_id].append(a.assisted_side)
    for sides in per_expert.values():
        assert len(sides) == 30
        assert abs(sides.count("A") - sides.count("B")) <= 1  # assisted on the left in half of the pairs, ±1
    by_item = defaultdict(set)
    for a in Assignment.objects.filter(item__kind="pair"):
        by_item[a.item_id].add(a.assisted_side)
    assert any(len(s) == 2 for s in by_item.values())  # sides differ between experts of one pair
    sequences = {tuple(s) for s in per_expert.values()}
    assert len(sequences) > 1


def test_balanced_side_keeps_every_expert_within_one_over_many_pairs():
    import random

    rng = random.Random(7)
    left = right = 0
    shares = []
    for _ in range(1001):
        side = services.balanced_side(left, right, rng)
        left, right = left + (side == "A"), right + (side == "B")
        assert abs(left - right) <= 1
        shares.append(side)
    assert abs(shares.count("A") / len(shares) - 0.5) < 0.001
    assert shares[:40] != ["A", "B"] * 20 and shares[:40] != ["B", "A"] * 20  # blocks start at random


def test_crossover_pairs_compare_the_same_readers_two_reports(scoring_trial):
    trial, readers, experts, cases = scoring_trial(design="crossover", n_cases=2, readers_per_site=2,
                                                   code="cx", washout_days=0)
    pairs = Item.objects.filter(trial=trial, kind="pair")
    assert pairs.count() == 2 * 2  # per case and reader
    for item in pairs:
        reads = [s.read for s in item.shown_reports.all()]
        assert {r.arm for r in reads} == {"assisted", "standard"} and len({r.reader_id for r in reads}) == 1
    assert Item.objects.filter(trial=trial, kind="quality").count() == Read.objects.filter(trial=trial).count() == 8
    assert Item.objects.filter(trial=trial, kind="reference").count() == 2


def test_case_randomized_trial_gets_quality_items_and_no_pairs(build_trial, investigator, make_user,
                                                               django_capture_on_commit_callbacks):
    trial, readers, cases, _ = build_trial(design="case_randomized", readers_per_site=2, n_cases=4, code="cr")
    add_experts(trial, investigator, make_user, 5)
    submit_all_reads(trial)
    with django_capture_on_commit_callbacks(execute=True):
        trial_services.transition_trial(trial=trial, by=investigator, to="scoring")
    assert Counter(Item.objects.filter(trial=trial).values_list("kind", flat=True)) == {"reference": 4, "quality": 4}


def test_building_is_refused_outside_reading_and_scoring(scoring_trial, investigator, outsider):
    trial, *_ = scoring_trial(n_cases=1, code="lk")
    move(trial, by=investigator, to="locked")
    with pytest.raises(services.WrongStatus, match="while the trial is reading or scoring"):
        services.build_items(trial=trial, by=investigator)
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.build_items(trial=trial, by=outsider)


def test_the_periodic_task_builds_what_became_ready_since(scoring_trial, investigator):
    from scoring import tasks

    trial, readers, experts, cases = scoring_trial(n_cases=2, code="pt")
    Item.objects.filter(trial=trial, case=cases[1]).update(superseded_at=trial.created_at)  # as if never built
    assert tasks.build_open_trials() == 4  # findings, two quality items and the pair of that case
    assert tasks.build_open_trials() == 0
