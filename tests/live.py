"""Prospective (live) trials in tests: one built through the services, and images arriving as from the PACS, with the
events a committed request would send (routing on arrival, on duty, on withdrawal) run in the test's process."""
from __future__ import annotations

from dataclasses import dataclass

from django.test import TestCase

from tests import dicom_corpus as corpus
from trial import services
from trial.models import Case, Membership, Role, Site, Trial


def committed():
    """Run the on-commit callbacks registered inside (trial.events.announce sends its events on commit), as the
    request's commit would; callbacks that register others (route_trial's audit anchor) run too."""
    return TestCase.captureOnCommitCallbacks(execute=True)


@dataclass
class LiveTrial:
    trial: Trial
    sites: list[Site]
    readers: list  # users, in the order they joined (site by site)

    def refresh(self) -> Trial:
        self.trial.refresh_from_db()
        return self.trial

    def member(self, user) -> Membership:
        return Membership.objects.select_related("allocation", "site").get(trial=self.trial, user=user,
                                                                            role=Role.READER)

    def readers_of(self, *, site: Site, arm: str) -> list[Membership]:
        """The site's readers randomized to `arm`, in the order they joined."""
        return list(Membership.objects.filter(trial=self.trial, role=Role.READER, site=site, allocation__arm=arm)
                    .select_related("user", "allocation").order_by("id"))


def open_trial(*, investigator, make_user, code: str = "live", sites=("site-a",), readers_per_site: int = 2,
               open_: bool = True, **options) -> LiveTrial:
    """A prospective paired-parallel trial with `readers_per_site` readers at each site, opened (readers randomized at
    the opening). Blocks of 2: every pair of readers who join a site one after the other is split 1:1, so each site
    with an even number of readers has as many in each arm. A paired-parallel trial opens only with a reader in each
    arm (trial.services._transition refuses otherwise): with one reader in all, pass open_=False."""
    options = {"block_multiples": [1], "fixed_block_reason": "a block of 2 keeps every site in both arms", **options}
    trial = services.create_trial(by=investigator, code=code, title="Live trial", mode="prospective", **options)
    site_objs = [services.add_site(trial=trial, by=investigator, code=s, name=s.title()) for s in sites]
    readers = []
    for site in site_objs:
        for i in range(readers_per_site):
            user = make_user(f"{code}-{site.code}-r{i}")
            services.add_member(trial=trial, by=investigator, user=user, role=Role.READER, site=site)
            readers.append(user)
    if open_:
        with committed():
            trial = services.transition_trial(trial=trial, by=investigator, to="open")
    trial.refresh_from_db()
    return LiveTrial(trial, site_objs, readers)


def image(seed: int, **header) -> bytes:
    """A small adult PA chest CR (eligible under the default rules), with `header` attributes changed (None removes
    one). Every seed is another image (another SOP Instance UID) of another study of the same patient (corpus.PHI)."""
    ds = corpus.radiograph_dataset(seed=seed, rows=160, columns=140)
    for keyword, value in header.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return corpus.to_bytes(ds)


def arrive(trial: Trial, site: Site, data: bytes, *, source: str = "dicom", by=None, urgent: bool = False) -> Case:
    """One image from the hospital (no user: `by` None), with what its commit sets off."""
    with committed():
        return services.receive_image(trial=trial, site=site, data=data, source=source, by=by, urgent=urgent)


def another_view(seed: int, *, of: bytes, view: str = "LL", **header) -> bytes:
    """Another image (`seed`) of the study of the image `of`: a lateral by default (a case is a study)."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(of), stop_before_pixels=True)
    return image(seed, ViewPosition=view, StudyInstanceUID=ds.StudyInstanceUID,
                 SeriesInstanceUID=ds.SeriesInstanceUID, **header)


def case_with_lateral(trial: Trial, site: Site, *, seed: int = 1) -> tuple[Case, Case]:
    """A case whose study has a frontal film and a lateral (seeds `seed`, `seed` + 1), and a case with a frontal film
    only (`seed` + 2), as from the PACS; the first with its lateral's viewer image made (the eager task)."""
    frontal = image(seed)
    case = arrive(trial, site, frontal)
    assert arrive(trial, site, another_view(seed + 1, of=frontal)) == case
    single = arrive(trial, site, image(seed + 2))
    case.refresh_from_db()
    return case, single


def assert_refused_to(client, users, urls) -> None:
    """Each of `users` is refused each of `urls` (403, never an image), and nobody logged in is sent to log in."""
    for user in users:
        client.force_login(user)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 403, (user.username, url)
            assert response.get("Content-Type") != "image/png"
    client.logout()
    assert all(client.get(url).status_code == 302 for url in urls)  # to the login page
