"""Issues: drafts written and edited, scheduled or sent through the send engine, and their numbers."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from ninja import Path, Router, Status
from ninja.errors import HttpError
from ninja.pagination import paginate

from delivery import engine
from newsletters import selectors
from newsletters.models import Issue

from .access import issue_or_404, newsletter_or_404
from .schemas import (
    FAILS,
    SLUG_PATTERN,
    WITH_BODY,
    Error,
    IssueIn,
    IssueOut,
    IssuePatch,
    NotReady,
    Paging,
    ScheduleIn,
    SendOut,
    StatsOut,
)

router = Router(tags=["issues"])
SLUG = Path(..., pattern=SLUG_PATTERN, max_length=60, description="The newsletter's slug.")
ID = Path(..., ge=1, le=2**63 - 1, description="The issue's id.")
EDITABLE = (Issue.Status.DRAFT, Issue.Status.SCHEDULED)
FIELDS = {"title": "title", "slug": "slug", "body": "body_markdown", "audience": "audience",
          "show_on_web": "show_on_web"}


def _unique_slug(newsletter, title):
    base = slugify(title)[:100].strip("-") or "issue"
    taken = set(
        Issue.objects.filter(newsletter=newsletter, slug__startswith=base).values_list("slug", flat=True)
    )
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


def _save(issue):
    """Validate as the admin's form would (header-safe title, slug), then save; 409 for a slug in use."""
    if Issue.objects.filter(newsletter_id=issue.newsletter_id, slug=issue.slug).exclude(pk=issue.pk).exists():
        raise HttpError(409, f"This newsletter already has an issue at the slug {issue.slug!r}.")
    try:
        issue.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        raise HttpError(422, " ".join(f"{field}: {' '.join(messages)}"
                                      for field, messages in error.message_dict.items())) from None
    try:
        with transaction.atomic():
            issue.save()
    except IntegrityError:
        raise HttpError(409, f"This newsletter already has an issue at the slug {issue.slug!r}.") from None


def _not_ready(error):
    problems = [str(problem) for problem in error.problems]
    return Status(422, {"detail": " ".join(problems), "problems": problems})


def _startable(issue):
    if issue.status not in EDITABLE:
        raise HttpError(409, f"The issue is already {issue.status}.")


@router.get("/newsletters/{slug}/issues", response={200: list[IssueOut], **FAILS})
@paginate(Paging)
def list_issues(request, slug: str = SLUG):
    """The newsletter's issues, newest first."""
    newsletter = newsletter_or_404(request, slug)
    issues = Issue.objects.filter(newsletter=newsletter).select_related("newsletter")
    return issues.order_by("-created_at", "-id")


@router.post("/newsletters/{slug}/issues", response={201: IssueOut, **WITH_BODY, 409: Error})
def create_issue(request, payload: IssueIn, slug: str = SLUG):
    """A new draft."""
    newsletter = newsletter_or_404(request, slug)
    issue = Issue(
        newsletter=newsletter, title=payload.title,
        slug=payload.slug or _unique_slug(newsletter, payload.title),
        body_markdown=payload.body, audience=payload.audience, show_on_web=payload.show_on_web,
    )
    _save(issue)
    return Status(201, issue)


@router.get("/issues/{issue_id}", response={200: IssueOut, **FAILS})
def get_issue(request, issue_id: int = ID):
    return issue_or_404(request, issue_id)


@router.patch("/issues/{issue_id}", response={200: IssueOut, **WITH_BODY, 409: Error})
def change_issue(request, payload: IssuePatch, issue_id: int = ID):
    """Edit a draft or a scheduled issue. Once sending has begun, only `show_on_web` may change."""
    changes = payload.model_dump(exclude_unset=True, exclude_none=True)
    with transaction.atomic():
        issue = issue_or_404(request, issue_id, for_update=True)
        if issue.status not in EDITABLE and set(changes) - {"show_on_web"}:
            raise HttpError(409, f"The issue is already {issue.status}: what went out stays as it was "
                                 "(only show_on_web may change).")
        for name, value in changes.items():
            setattr(issue, FIELDS[name], value)
        _save(issue)
    return issue


@router.post("/issues/{issue_id}/schedule", response={200: IssueOut, **WITH_BODY, 409: Error, 422: NotReady})
def schedule_issue(request, payload: ScheduleIn, issue_id: int = ID):
    """Send it at `at` (checked now: what would stop it then answers 422 with the problems)."""
    issue = issue_or_404(request, issue_id)
    _startable(issue)
    if payload.at <= timezone.now():
        raise HttpError(422, "That time has passed; to send now, POST /issues/{id}/send.")
    try:
        engine.schedule_send(issue.pk, payload.at)
    except engine.IssueNotReady as error:
        return _not_ready(error)
    issue.refresh_from_db()
    return issue


@router.post("/issues/{issue_id}/send", response={202: SendOut, **FAILS, 409: Error, 422: NotReady})
def send_issue(request, issue_id: int = ID):
    """Send it now: the audience is frozen at once and the mail goes out in the background."""
    issue = issue_or_404(request, issue_id)
    _startable(issue)
    try:
        recipients = engine.start_send(issue.pk)
    except engine.IssueNotReady as error:
        return _not_ready(error)
    issue.refresh_from_db()
    return Status(202, {"id": issue.pk, "status": issue.status, "recipients": recipients})


@router.get("/issues/{issue_id}/stats", response={200: StatsOut, **FAILS})
def issue_stats(request, issue_id: int = ID):
    """Its deliveries by status, how many the send was frozen to, and whom it would reach now."""
    issue = issue_or_404(request, issue_id)
    counts = engine.progress(issue.pk)
    return {"id": issue.pk, "status": issue.status, "recipients": sum(counts.values()),
            "audience": selectors.audience_count(issue), "deliveries": counts}
