"""What the API reads and writes, as pydantic schemas (the OpenAPI schema is made from them).

Every string that reaches the database is bounded and free of what PostgreSQL or a mail header
cannot hold; every time is aware and inside the range a database can store.
"""

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Literal

from django.urls import NoReverseMatch
from ninja import Field, Schema
from ninja.pagination import LimitOffsetPagination
from pydantic import AfterValidator, field_validator

from newsletters.models import Issue
from ownedaudience import links
from subscribers.forms import has_control_characters
from subscribers.models import Subscription


def _one_line(value):
    if has_control_characters(value):
        raise ValueError("must be one line, without control characters")
    return value


def _text(value):
    if any(char == "\x00" or unicodedata.category(char) == "Cs" for char in value):
        raise ValueError("must not contain NUL characters or lone surrogates")
    return value


def _aware(value):
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)  # PostgreSQL takes offsets up to 15:59 only
    except OverflowError:
        raise ValueError("is out of range") from None


def line(max_length, min_length=0):
    return Annotated[str, Field(min_length=min_length, max_length=max_length), AfterValidator(_one_line)]


When = Annotated[datetime, AfterValidator(_aware)]
SLUG_PATTERN = r"^[-a-zA-Z0-9_]+$"
Slug = Annotated[str, Field(min_length=1, max_length=120, pattern=SLUG_PATTERN)]
SubscriptionStatus = Literal[tuple(Subscription.Status.values)]
Tier = Literal[tuple(Subscription.Tier.values)]
IssueStatus = Literal[tuple(Issue.Status.values)]
Audience = Literal[tuple(Issue.Audience.values)]


class Paging(LimitOffsetPagination):
    """`limit` (1 to 500, 50 when left out) and `offset`; the answer has `items` and `count`."""

    class Input(Schema):
        limit: int = Field(50, ge=1, le=500)
        offset: int = Field(0, ge=0, le=10**9)

    Input.__name__ = "PageInput"


class Error(Schema):
    detail: str


class Invalid(Schema):
    detail: str
    errors: list[dict] = Field(
        default_factory=list, description="Each problem: where (`loc`) and what (`msg`)."
    )


FAILS = {401: Error, 404: Error, 422: Invalid}  # what any call with a token and a path can answer
WITH_BODY = {400: Error, **FAILS}  # and with a body: 400 for one that is not JSON


class Conflict(Schema):
    detail: str
    id: int | None = Field(None, description="The existing subscription, when the address is on the list.")


class NotReady(Invalid):
    problems: list[str] = Field(default_factory=list, description="What to fix before it can go out.")


# --- newsletters ------------------------------------------------------------------------------


class NewsletterOut(Schema):
    slug: str
    name: str
    description: str
    language: str
    sender_name: str
    sender_email: str
    created_at: datetime
    page_url: str

    @staticmethod
    def resolve_page_url(obj):
        return links.page(obj)


# --- subscribers ------------------------------------------------------------------------------


class SubscriberOut(Schema):
    id: int = Field(description="The subscription's id (one address on one newsletter).")
    email: str
    name: str
    status: SubscriptionStatus
    tier: Tier
    source: str
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None

    @staticmethod
    def resolve_email(obj):
        return obj.subscriber.email

    @staticmethod
    def resolve_name(obj):
        return obj.subscriber.name


class SubscriberFilters(Schema):
    status: SubscriptionStatus | None = None
    tier: Tier | None = None
    created_after: When | None = None
    created_before: When | None = None
    email: line(254) | None = Field(None, description="Part of the address, any case.")


class SubscriberIn(Schema):
    email: Annotated[str, Field(max_length=254, json_schema_extra={"format": "email"})]
    name: line(200) = ""
    source: line(100) = Field("api", description="Which form or tool brought them.")
    attested: bool = Field(False, description=(
        "false: an invitation (pending, a confirmation email goes out; nothing else until they say yes). "
        "true: you declare this address already opted in to this list: active at once, your declaration "
        "kept as its consent record (an import)."
    ))


class SubscriberPatch(Schema):
    name: line(200) | None = None
    status: Literal["unsubscribed"] | None = Field(None, description=(
        "Only `unsubscribed`: an API may take someone off the list, never make them active "
        "(consent is theirs)."
    ))
    tier: Tier | None = None

    @field_validator("status", mode="before")
    @classmethod
    def only_unsubscribe(cls, value):
        if value not in (None, "unsubscribed"):
            raise ValueError(
                "can only be 'unsubscribed': an API may take someone off the list, never make them active"
            )
        return value


# --- issues -----------------------------------------------------------------------------------


class IssueOut(Schema):
    id: int
    newsletter: str
    title: str
    slug: str
    body: str = Field(description="Markdown.")
    status: IssueStatus
    audience: Audience
    show_on_web: bool
    scheduled_at: datetime | None
    send_started_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    updated_at: datetime
    web_url: str | None

    @staticmethod
    def resolve_newsletter(obj):
        return obj.newsletter.slug

    @staticmethod
    def resolve_body(obj):
        return obj.body_markdown

    @staticmethod
    def resolve_web_url(obj):
        try:
            return links.issue(obj)
        except NoReverseMatch:  # a slug the site's addresses cannot carry
            return None


Body = Annotated[str, Field(max_length=200_000, description="Markdown."), AfterValidator(_text)]


class IssueIn(Schema):
    title: line(300, min_length=1) = Field(description="Also the email's subject.")
    slug: Slug | None = Field(None, description="Its web address; made from the title when left out.")
    body: Body = ""
    audience: Audience = "everyone"
    show_on_web: bool = True


class IssuePatch(Schema):
    title: line(300, min_length=1) | None = None
    slug: Slug | None = None
    body: Body | None = None
    audience: Audience | None = None
    show_on_web: bool | None = None


class ScheduleIn(Schema):
    at: When = Field(description="When to send; with a time zone (UTC when left out).")


class SendOut(Schema):
    id: int
    status: IssueStatus
    recipients: int


class DeliveryCounts(Schema):
    """Deliveries of the issue by status (delivery.models.Delivery.Status)."""

    pending: int = 0
    claimed: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0


class StatsOut(Schema):
    id: int
    status: IssueStatus
    recipients: int = Field(description="How many the send was frozen to (0 before it starts).")
    audience: int = Field(description="How many a send of this issue would reach now.")
    deliveries: DeliveryCounts
