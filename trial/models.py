"""Trials, sites, memberships, cases, allocations and the audit log: the data every other app stands on."""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Q

from . import lifecycle
from .findings import DEFAULT_FINDINGS

# The limits of a trial's settings, declared once: the model fields, the forms, the API and the services use these.
TRIAL_CODE_LENGTH = 40
TITLE_LENGTH = 200
REGISTRATION_ID_LENGTH = 40
SITE_CODE_LENGTH = 20
FINDING_NAME_LENGTH = 60
CLINICAL_HISTORY_LIMIT = 4000
EXPERTS_PER_ITEM_RANGE = (1, 99)
WASHOUT_DAYS_RANGE = (0, 365)
RATIO_RANGE = (1, 9)              # each arm's share of a block (1:1 … 9:1)
BLOCK_MULTIPLE_RANGE = (1, 10)    # block sizes as multiples of the ratio sum


def default_findings() -> list[str]:
    return list(DEFAULT_FINDINGS)


def default_block_multiples() -> list[int]:
    # Blocks of 1, 2 or 3 times the ratio sum: 2, 4 or 6 for 1:1.
    return [1, 2, 3]


class Design(models.TextChoices):
    PAIRED_PARALLEL = "paired_parallel", "Paired parallel (readers randomized 1:1, every case read in both arms)"
    CASE_RANDOMIZED = "case_randomized", "Case randomized (each case randomized to one arm, read once)"
    CROSSOVER = "crossover", "Crossover (every reader reads every case in both arms, with washout)"


class Mode(models.TextChoices):
    PROSPECTIVE = lifecycle.PROSPECTIVE, "Prospective, in clinical practice (cases read and scored as they arrive)"
    READER_STUDY = lifecycle.READER_STUDY, "Reader study (enrol a set of cases, then read them, then score them)"


class Status(models.TextChoices):
    SETUP = lifecycle.SETUP, "Setup"
    # a reader study
    ENROLLING = lifecycle.ENROLLING, "Enrolling"
    READING = lifecycle.READING, "Reading"
    SCORING = lifecycle.SCORING, "Scoring"
    # a prospective trial
    OPEN = lifecycle.OPEN, "Open"
    PAUSED = lifecycle.PAUSED, "Paused"
    CLOSED = lifecycle.CLOSED, "Closed to enrolment"
    LOCKED = lifecycle.LOCKED, "Locked"
    UNBLINDED = lifecycle.UNBLINDED, "Unblinded"


class SiteEnrolment(models.TextChoices):
    OPEN = "open", "Open"
    PAUSED = "paused", "Paused"
    CLOSED = "closed", "Closed"


class DraftRule(models.TextChoices):
    WAIT = "wait", "The assisted read waits for its draft"
    READ_WITHOUT = "read_without", "After the limit, the assisted read opens without a draft (an intercurrent event)"


class ReleasePolicy(models.TextChoices):
    RESEARCH_ONLY = "research_only", "Research only: no report leaves the platform"
    STANDARD = "standard", "The signed standard-care report is the report of record"
    ASSISTED = "assisted", "The signed AI-assisted report is the report of record"
    SENIOR = "senior", "The senior writes the report of record from both"


class RoutingRule(models.TextChoices):
    FEWEST_OPEN = "fewest_open", "Fewest open reads, ties broken by the concealed sequence"


class Arm(models.TextChoices):
    ASSISTED = "assisted", "AI-assisted"
    STANDARD = "standard", "Standard care"


class Role(models.TextChoices):
    INVESTIGATOR = "investigator", "Investigator"
    READER = "reader", "Reader (radiologist)"
    SENIOR = "senior", "Senior (sign-off)"
    EXPERT = "expert", "Expert (blinded scorer)"
    STATISTICIAN = "statistician", "Statistician"
    # An independent data-monitoring committee member: the only person who sees interim safety and efficacy by arm.
    MONITOR = "monitor", "Data monitoring committee"


class Trial(models.Model):
    code = models.SlugField(max_length=TRIAL_CODE_LENGTH, unique=True,
                            help_text="Short code used in URLs, e.g. janus-cxr-1.")
    title = models.CharField(max_length=TITLE_LENGTH)
    registration_id = models.CharField(
        max_length=REGISTRATION_ID_LENGTH, blank=True, help_text="Registry identifier, e.g. NCT07117266."
    )
    design = models.CharField(max_length=20, choices=Design.choices, default=Design.PAIRED_PARALLEL)
    mode = models.CharField(max_length=14, choices=Mode.choices, default=Mode.READER_STUDY)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SETUP)
    # A prospective trial's conduct (trial.lifecycle): why it is paused, how many cases it aims at.
    pause_reason = models.CharField(max_length=300, blank=True)
    target_cases = models.PositiveIntegerField(null=True, blank=True, help_text="Cases to enrol in all (empty: none).")
    close_at_target = models.BooleanField(default=False, help_text="Close enrolment when the target is reached.")
    # Inclusion and exclusion rules (trial.dicom.eligibility.EligibilityRules as a dict), checked on the original
    # header of every arriving image; empty: every valid radiograph is enrolled (a reader study's hand-picked set).
    eligibility = models.JSONField(null=True, blank=True)
    flag_urgency = models.BooleanField(default=False, help_text="Urgent cases first on worklists.")
    # A case is a study: the first frontal image opens the case, every other image of the study joins it. An image
    # that arrives before any frontal image of its study waits this long after the study's last image for one, then
    # is screened out (0: judged alone at once).
    settle_seconds = models.PositiveIntegerField(default=60)
    routing_rule = models.CharField(max_length=20, choices=RoutingRule.choices, default=RoutingRule.FEWEST_OPEN)
    draft_rule = models.CharField(max_length=14, choices=DraftRule.choices, default=DraftRule.WAIT)
    draft_limit_minutes = models.PositiveSmallIntegerField(
        default=30, help_text="After this, a draft not ready follows the draft rule.")
    read_window_hours = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="A read submitted later than this after arrival is a protocol deviation.")
    release_policy = models.CharField(max_length=14, choices=ReleasePolicy.choices,
                                      default=ReleasePolicy.RESEARCH_ONLY)
    findings = models.JSONField(default=default_findings, help_text="The findings readers mark and experts judge.")
    experts_per_item = models.PositiveSmallIntegerField(default=5)
    allow_no_preference = models.BooleanField(default=True)
    washout_days = models.PositiveSmallIntegerField(default=28,
                                                    help_text="Crossover only: days between two reads of a case.")
    require_signoff = models.BooleanField(default=False, help_text="Reports are final only after a senior signs them.")
    # Investigators, statisticians, seniors and staff always log in with a second factor; readers and experts too
    # where the trial asks for it.
    second_factor_for_all = models.BooleanField(
        default=False, verbose_name="Second factor for readers and experts too",
        help_text="Investigators, statisticians and seniors always log in with a second factor (an authenticator "
                  "app); with this, readers and experts of this trial do as well.")
    # Randomization: permuted blocks of sizes multiple × (assisted + standard ratio).
    ratio_assisted = models.PositiveSmallIntegerField(default=1)
    ratio_standard = models.PositiveSmallIntegerField(default=1)
    block_multiples = models.JSONField(default=default_block_multiples)
    # One block size lets whoever has seen most of a block tell its last allocations; it is refused unless the
    # investigator states why (e.g. two readers per site: a block of 2 is what keeps every site in both arms).
    fixed_block_reason = models.CharField(
        max_length=300, blank=True, verbose_name="Reason for a single block size",
        help_text="Only with one block size, which is otherwise refused (predictable ends of blocks).")
    # Concealment: the seed never leaves the server (no serializer, form, template or admin field shows it).
    randomization_seed = models.BinaryField(max_length=32, editable=False)
    # Keys the de-identified UIDs and the duplicate check of this trial; as secret as the seed.
    uid_secret = models.BinaryField(max_length=32, editable=False)
    case_counter = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(experts_per_item__gte=EXPERTS_PER_ITEM_RANGE[0])
                           & Q(experts_per_item__lte=EXPERTS_PER_ITEM_RANGE[1])),
                name="trial_experts_per_item_range",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in Status]), name="trial_status_valid"
            ),
            models.CheckConstraint(condition=Q(design__in=[d.value for d in Design]), name="trial_design_valid"),
            models.CheckConstraint(condition=Q(mode__in=[m.value for m in Mode]), name="trial_mode_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.code}: {self.title}"

    @property
    def is_prospective(self) -> bool:
        return self.mode == Mode.PROSPECTIVE

    def allows(self, work: str) -> bool:
        return lifecycle.allows(self.status, work)

    def next_statuses(self) -> tuple[str, ...]:
        return lifecycle.next_statuses(self.mode, self.status)


class Site(models.Model):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="sites")
    code = models.SlugField(max_length=SITE_CODE_LENGTH)
    name = models.CharField(max_length=TITLE_LENGTH)
    enrolment = models.CharField(max_length=8, choices=SiteEnrolment.choices, default=SiteEnrolment.OPEN)
    enrolment_reason = models.CharField(max_length=300, blank=True)
    target_cases = models.PositiveIntegerField(null=True, blank=True)
    # The hospital's DICOM senders (trial.listener): the calling AE titles this site's PACS or modalities use, and
    # optionally the host addresses they call from. An association from any other caller is refused.
    dicom_ae_titles = models.JSONField(default=list, blank=True)
    dicom_hosts = models.JSONField(default=list, blank=True)
    # The site's time zone (IANA name): its readers' rosters are read in it.
    time_zone = models.CharField(max_length=60, default="UTC")
    # Where its reports of record go (trial.outbox): the site's PACS by C-STORE of a DICOM SR, and its FHIR server.
    # Nothing leaves for a destination that is not set here; PHI goes only to this site's own destinations.
    pacs_ae_title = models.CharField(max_length=16, blank=True)
    pacs_host = models.CharField(max_length=255, blank=True)
    pacs_port = models.PositiveIntegerField(null=True, blank=True)
    pacs_tls = models.BooleanField(default=False, help_text="Send over DICOM TLS (settings.CXR_DICOM_TLS_*).")
    fhir_base_url = models.URLField(blank=True, help_text="e.g. https://fhir.hospital.example/r4")
    # The NAME of an environment variable holding the FHIR server's bearer token: the secret stays out of the database
    fhir_token_env = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [models.UniqueConstraint(fields=["trial", "code"], name="site_code_unique_in_trial")]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class Membership(models.Model):
    """One role of one person in one trial; a person may hold several roles."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trial_memberships")
    role = models.CharField(max_length=14, choices=Role.choices)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, null=True, blank=True, related_name="memberships")
    # A pseudonym for exports and blinded views ("R03", "E02"), stable for the trial's life.
    pseudonym = models.CharField(max_length=12)
    # A reader of a prospective trial: cases are routed only to readers on duty, never to a withdrawn one.
    on_duty = models.BooleanField(default=True)
    # A weekly roster (trial.roster): with one, the platform puts the reader on and off duty by it; without, by hand.
    roster = models.JSONField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawal_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["role", "pseudonym"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "user", "role"], name="membership_unique_role"),
            models.UniqueConstraint(fields=["trial", "pseudonym"], name="membership_pseudonym_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} in {self.trial.code}"


class Invitation(models.Model):
    """A link e-mailed to one address: only that address's account may take it, once, before it expires."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=14, choices=Role.choices)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    token = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="After this the link no longer works (CXR_INVITATION_DAYS).")
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]


class ApiToken(models.Model):
    """A key to the API for one person in one trial. Only its SHA-256 is stored (the key is shown once, when it is
    made); it expires, and it reaches nothing outside its trial."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="api_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=60, blank=True, help_text="What the token is for, e.g. “PACS bridge”.")
    prefix = models.CharField(max_length=16, help_text="The key's first characters, to tell tokens apart.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user} in {self.trial.code})"

    @staticmethod
    def hash_key(key: str) -> str:
        # A random 256-bit key needs no slow, salted hash: nothing can be guessed from its SHA-256.
        return hashlib.sha256(key.encode()).hexdigest()


def case_file_path(case: Case, filename: str) -> str:
    return f"trials/{case.trial_id}/cases/{case.code}/{filename}"


class RenderedImage(models.Model):
    """What a stored radiograph looks like to the viewer, the same for a case's primary image (on Case) and its study's
    other images (CaseImage): its header summary, its display size and file window, and the viewer's window presets
    (file, auto, lung, mediastinum, bone) in the units of its values image. Each model keeps its own files."""

    display_windows = models.JSONField(default=dict, blank=True)
    modality = models.CharField(max_length=4)
    view_position = models.CharField(max_length=16, blank=True)
    rows = models.PositiveIntegerField()
    columns = models.PositiveIntegerField()
    bits_stored = models.PositiveSmallIntegerField()
    photometric = models.CharField(max_length=16)
    transfer_syntax = models.CharField(max_length=128)  # pydicom names JPEG Lossless SV1 in 88 characters
    display_width = models.PositiveIntegerField()
    display_height = models.PositiveIntegerField()
    window_center = models.FloatField()
    window_width = models.FloatField()
    window_source = models.CharField(max_length=40)

    class Meta:
        abstract = True


class Case(RenderedImage):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="cases")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="cases")
    code = models.CharField(max_length=20, help_text="The case's pseudonymous code, e.g. C0007.")
    clinical_history = models.TextField(blank=True)
    # Keyed hash (HMAC with the trial's uid_secret) of the original SOP Instance UID: detects a second
    # upload of the same image without keeping the identifying UID itself.
    source_fingerprint = models.CharField(max_length=64)
    dicom = models.FileField(upload_to=case_file_path, max_length=300)
    display_image = models.FileField(upload_to=case_file_path, max_length=300)
    thumbnail = models.FileField(upload_to=case_file_path, max_length=300)
    # The viewer's real window/level: modality values at display size packed 16-bit in an RGB PNG (presets: the
    # display_windows of RenderedImage).
    values_image = models.FileField(upload_to=case_file_path, max_length=300, blank=True)
    # None: an image that arrived from a hospital system (the PACS), not an upload.
    enrolled_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+")
    enrolled_at = models.DateTimeField(auto_now_add=True)
    # When the image reached the platform (the reading clock of a prospective trial starts there), its place in the
    # trial's arrival order (the concealed routing tie-break is drawn from it), and whether it is urgent.
    arrived_at = models.DateTimeField(null=True, blank=True)
    arrival_index = models.PositiveIntegerField(null=True, blank=True)
    urgent = models.BooleanField(default=False)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawal_reason = models.CharField(max_length=300, blank=True)
    # The study the case is: a keyed hash of its original Study Instance UID (its other images join it).
    study_key = models.CharField(max_length=64, blank=True, db_index=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "code"], name="case_code_unique_in_trial"),
            models.UniqueConstraint(fields=["trial", "source_fingerprint"], name="case_image_unique_in_trial"),
        ]

    def __str__(self) -> str:
        return f"{self.trial.code}/{self.code}"


class CaseIdentity(models.Model):
    """The link from a case back to the hospital's records: investigators only, never exported blinded."""

    case = models.OneToOneField(Case, on_delete=models.PROTECT, related_name="identity")
    accession_number = models.CharField(max_length=64, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    study_instance_uid = models.CharField(max_length=64, blank=True)
    sop_instance_uid = models.CharField(max_length=64)
    original_filename = models.CharField(max_length=255, blank=True)
    # The repeat rule of eligibility: the patient as a keyed hash (trial.dicom.eligibility.patient_key) and the
    # study date, kept here with the identity, never in the screening log.
    patient_key = models.CharField(max_length=64, blank=True, db_index=True)
    study_date = models.DateField(null=True, blank=True)
    # What a report sent back to the hospital needs to be filed next to the image (trial.outbox): the original series
    # and SOP class of the image, and the patient as the PACS knows them (a PACS may refuse or quarantine an SR whose
    # patient module contradicts the study's).
    series_instance_uid = models.CharField(max_length=64, blank=True)
    sop_class_uid = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_birth_date = models.CharField(max_length=8, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)


def image_file_path(image: CaseImage, filename: str) -> str:
    return f"trials/{image.trial_id}/images/{image.study_key[:16]}/{image.source_fingerprint[:16]}-{filename}"


class CaseImage(RenderedImage):
    """An image of a case's study besides its primary one (the primary is on the Case itself: the frontal film the AI
    drafts from, shown first): a lateral, a repeat. An image that arrives before any frontal image of its study waits
    here without a case (staged) until one arrives, or is screened out when the study settles without one. Stored
    de-identified (its Patient ID and Name: the case's code, or "STAGED" while it waits)."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="case_images")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="case_images")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, null=True, blank=True, related_name="images")
    study_key = models.CharField(max_length=64, db_index=True)
    source_fingerprint = models.CharField(max_length=64)
    source = models.CharField(max_length=12)
    received_at = models.DateTimeField()
    added_at = models.DateTimeField(null=True, blank=True, help_text="When it joined its case.")
    dicom = models.FileField(upload_to=image_file_path, max_length=300)
    display_image = models.FileField(upload_to=image_file_path, max_length=300)
    thumbnail = models.FileField(upload_to=image_file_path, max_length=300)
    values_image = models.FileField(upload_to=image_file_path, max_length=300, blank=True)
    # The original UIDs (investigator-only, like CaseIdentity): the report sent back references every image.
    original_series_instance_uid = models.CharField(max_length=64, blank=True)
    original_sop_class_uid = models.CharField(max_length=64, blank=True)
    original_sop_instance_uid = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [models.UniqueConstraint(fields=["trial", "source_fingerprint"],
                                               name="case_image_once_per_trial")]


class Allocation(models.Model):
    """One concealed allocation, written once: the n-th unit of a stratum gets the n-th arm of the sequence."""

    class Unit(models.TextChoices):
        READER = "reader", "Reader"
        CASE = "case", "Case"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="allocations")
    stratum = models.CharField(max_length=40)
    position = models.PositiveIntegerField(help_text="0-based index within the stratum's sequence.")
    unit_type = models.CharField(max_length=8, choices=Unit.choices)
    membership = models.OneToOneField(
        Membership, on_delete=models.PROTECT, null=True, blank=True, related_name="allocation"
    )
    case = models.OneToOneField(Case, on_delete=models.PROTECT, null=True, blank=True, related_name="allocation")
    arm = models.CharField(max_length=10, choices=Arm.choices)
    block = models.PositiveIntegerField()
    block_size = models.PositiveSmallIntegerField()
    # None: the platform allocated it (a case arriving from a hospital system in a case-randomized trial)
    allocated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                     related_name="+")
    allocated_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["stratum", "position"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "stratum", "position"], name="allocation_position_unique"),
            models.CheckConstraint(
                condition=(Q(unit_type="reader", membership__isnull=False, case__isnull=True)
                           | Q(unit_type="case", case__isnull=False, membership__isnull=True)),
                name="allocation_one_unit",
            ),
        ]


class ScreeningEntry(models.Model):
    """One arriving image and what became of it: enrolled, or not with the rule or refusal that decided. Holds no PHI
    (no identifier, no patient key, no study date: those stay with the case's identity)."""

    class Outcome(models.TextChoices):
        ENROLLED = "enrolled", "Enrolled"
        ADDED = "added", "Added to its study's case"
        NOT_ENROLLED = "not_enrolled", "Not enrolled"

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="screening")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="screening")
    received_at = models.DateTimeField()
    source = models.CharField(max_length=12, help_text="upload, dicom, stow-rs, simulator")
    outcome = models.CharField(max_length=14, choices=Outcome.choices)
    # An eligibility rule (trial.dicom.eligibility.EXCLUSION_CODES), a refusal of the image ("dicom:<code>"), or the
    # state of the trial or site ("trial_paused", "site_closed", "target_reached", "duplicate", …): SCREENING_CODES.
    code = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=400, blank=True)
    # The case the image became (enrolled) or joined (added: another image of the case's study).
    case = models.ForeignKey(Case, on_delete=models.PROTECT, null=True, blank=True, related_name="screening")

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [models.Index(fields=["trial", "outcome", "code"])]
        constraints = [
            models.CheckConstraint(condition=(Q(outcome__in=["enrolled", "added"], case__isnull=False, code="")
                                              | Q(outcome="not_enrolled", case__isnull=True) & ~Q(code="")),
                                   name="screening_outcome_consistent_v2"),
            models.UniqueConstraint(fields=["case"], condition=Q(outcome="enrolled"),
                                    name="screening_one_enrolment_per_case"),
        ]


class Deviation(models.Model):
    """A protocol deviation or an intercurrent event: when, who, what and why. Exported with the dataset, counted in
    the flow; the analysis plan may treat the intercurrent ones by its strategy."""

    class Kind(models.TextChoices):
        DRAFT_NOT_SHOWN = "draft_not_shown", "AI draft not shown: the read opened without it (draft rule)"
        OUTSIDE_SITE_OR_ARM = "outside_site_or_arm", "Read outside the case's site or arm"
        PAST_WINDOW = "past_window", "Read past the trial's time window"
        READER_WITHDRAWN = "reader_withdrawn", "Reader withdrawn"
        CASE_WITHDRAWN = "case_withdrawn", "Case withdrawn"
        OTHER = "other", "Other"

    # Intercurrent events change what a read measures (the estimand's strategy decides how they count).
    INTERCURRENT = frozenset({Kind.DRAFT_NOT_SHOWN, Kind.PAST_WINDOW, Kind.READER_WITHDRAWN,
                              Kind.CASE_WITHDRAWN})

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="deviations")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    occurred_at = models.DateTimeField()
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                                    related_name="+", help_text="Empty: recorded by the platform itself.")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, null=True, blank=True, related_name="deviations")
    reader = models.ForeignKey(Membership, on_delete=models.PROTECT, null=True, blank=True, related_name="deviations")
    # The read concerned (reading.Read: the trial app may not point at an upper app's table).
    read_id = models.PositiveBigIntegerField(null=True, blank=True)
    description = models.CharField(max_length=400)
    reason = models.CharField(max_length=400, blank=True)
    intercurrent = models.BooleanField(default=False)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["trial", "kind"])]
        constraints = [models.CheckConstraint(condition=Q(kind__in=["draft_not_shown", "outside_site_or_arm",
                                                                    "past_window", "reader_withdrawn",
                                                                    "case_withdrawn", "other"]),
                                              name="deviation_kind_valid")]


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit log is append-only: events cannot be updated.")

    def delete(self):
        raise PermissionError("The audit log is append-only: events cannot be deleted.")


class AuditEvent(models.Model):
    """Append-only, hash-chained: each event holds the (keyed) hash of the one before it, and the keyed hash of the
    state of the record it wrote (trial.audit: `scheme`, `state_hash`)."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=60)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # How `hash` was computed: "sha256" (events written before the chain was keyed) or "hmac-sha256" (trial.audit).
    scheme = models.CharField(max_length=16, default="sha256")
    # HMAC of the registered fields of the record this event wrote, as they were after the write (trial.audit).
    state_hash = models.CharField(max_length=64, blank=True, default="")

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("The audit log is append-only: events cannot be changed.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit log is append-only: events cannot be deleted.")


class AuditHead(models.Model):
    """One row: the hash of the last event. Locking it serializes appends so the chain never forks."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_hash = models.CharField(max_length=64)
    count = models.PositiveBigIntegerField(default=0)
    # The last verification (the nightly task, verify_audit): shown to investigators; a notice, not a proof (the
    # proof is running verify_audit again).
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_intact = models.BooleanField(null=True)
    verified_summary = models.TextField(blank=True)


class Signature(models.Model):
    """An electronic signature (21 CFR Part 11): who signed what, meaning what, when, bound to the content's hash.
    Written only by trial.signatures.sign, in the transaction of the act it signs; never changed."""

    class Meaning(models.TextChoices):
        LOCK = "lock", "I lock the trial database: its data are complete, checked and final."
        UNBLIND_REQUEST = "unblind_request", "I ask for this locked trial to be unblinded."
        UNBLIND_APPROVE = "unblind_approve", "I approve unblinding this locked trial."
        FREEZE_PLAN = "freeze_plan", "I approve this analysis plan, pre-specified before unblinding."
        SIGN_OFF = "sign_off", "I have reviewed this report and approve it for release."
        RECORD_REPORT = "record_report", "I wrote this report from the case's two signed reports and approve it as " \
                                         "the clinical report of record."

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="signatures")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signer_name = models.CharField(max_length=300, help_text="The printed name at the time of signing.")
    meaning = models.CharField(max_length=20, choices=Meaning.choices)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of what was signed.")
    method = models.CharField(max_length=80)
    signed_at = models.DateTimeField()

    class Meta:
        ordering = ["signed_at", "id"]
        indexes = [models.Index(fields=["trial", "meaning"])]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("A signature is never changed.")
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.signer_name}: {self.get_meaning_display()} ({self.signed_at:%Y-%m-%d %H:%M} UTC)"


class SenderToken(models.Model):
    """A hospital system's key to send images to one site (DICOMweb STOW-RS): a system, not a person, so not an
    ApiToken. Only its SHA-256 is stored; the key is shown once."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="sender_tokens")
    name = models.CharField(max_length=60, blank=True, help_text="Which system uses it, e.g. “PACS router”.")
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class Release(models.Model):
    """One version of a case's report of record, released to the hospital (the outbox's message): written in the
    transaction of the signature that made it, never changed. A correction after release is a new version that
    amends the one before. The SR's UIDs are fixed here, so that every retry re-sends the same instance."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="releases")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="releases")
    version = models.PositiveIntegerField()
    source = models.CharField(max_length=10, help_text="standard, assisted or senior (the release policy)")
    findings = models.TextField(blank=True)
    impression = models.TextField()
    signed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signer_name = models.CharField(max_length=300)
    signed_at = models.DateTimeField()
    created_at = models.DateTimeField()
    sr_series_instance_uid = models.CharField(max_length=64)
    sr_sop_instance_uid = models.CharField(max_length=64, unique=True)
    amends = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="amended_by")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["case", "version"], name="release_version_unique")]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("A released report is never changed: a correction is a new version.")
        super().save(*args, **kwargs)


class Delivery(models.Model):
    """One release to one destination of its site (the site's PACS, its FHIR server), delivered at least once by a
    Celery task with retries; the receiving side sees it once, because every attempt sends the same identifiers
    (the SR's SOP Instance UID; a conditional create of the DiagnosticReport on its identifier)."""

    class Channel(models.TextChoices):
        DICOM_SR = "dicom_sr", "DICOM SR to the PACS"
        FHIR = "fhir", "FHIR DiagnosticReport"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (retries exhausted; resend by hand)"

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    destination = models.CharField(max_length=300, help_text="Where it goes, as set for the site when released.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=400, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["release", "channel"], name="delivery_once_per_channel")]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]


class DeliveryAttempt(models.Model):
    """One try of a delivery and what the other side answered (no PHI: a status and its comment)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="tries")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField()
    answer = models.CharField(max_length=400)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True,
                           related_name="+", help_text="Who resent it by hand; empty: the outbox task.")

    class Meta:
        ordering = ["started_at", "id"]
