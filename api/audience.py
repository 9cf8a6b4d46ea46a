"""Newsletters and their subscribers. Every change of a status or a tier goes through
subscribers.services (the one writer); an erasure through subscribers.erasure."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from ninja import Path, Query, Router, Status
from ninja.errors import HttpError
from ninja.pagination import paginate

from subscribers import services
from subscribers.forms import SignupForm
from subscribers.models import Subscription

from .access import newsletter_or_404, newsletters_of, subscription_or_404, user_of
from .schemas import (
    FAILS,
    SLUG_PATTERN,
    WITH_BODY,
    Conflict,
    Error,
    NewsletterOut,
    Paging,
    SubscriberFilters,
    SubscriberIn,
    SubscriberOut,
    SubscriberPatch,
)

router = Router(tags=["subscribers"])
SLUG = Path(..., pattern=SLUG_PATTERN, max_length=60, description="The newsletter's slug.")
ID = Path(..., ge=1, le=2**63 - 1, description="The subscription's id.")


@router.get("/newsletters", response={200: list[NewsletterOut], 401: Error}, tags=["newsletters"],
            url_name="list_newsletters")
def list_newsletters(request):
    """The newsletters this token reaches."""
    return newsletters_of(request).order_by("slug")


@router.get("/newsletters/{slug}", response={200: NewsletterOut, **FAILS}, tags=["newsletters"])
def get_newsletter(request, slug: str = SLUG):
    return newsletter_or_404(request, slug)


@router.get("/newsletters/{slug}/subscribers", response={200: list[SubscriberOut], **FAILS})
@paginate(Paging)
def list_subscribers(request, slug: str = SLUG, filters: Query[SubscriberFilters] = None):
    """The newsletter's subscriptions, oldest first (new ones join the end, so paging stays steady)."""
    newsletter = newsletter_or_404(request, slug)
    subscriptions = Subscription.objects.filter(newsletter=newsletter).select_related("subscriber")
    if filters.status:
        subscriptions = subscriptions.filter(status=filters.status)
    if filters.tier:
        subscriptions = subscriptions.filter(tier=filters.tier)
    if filters.created_after:
        subscriptions = subscriptions.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        subscriptions = subscriptions.filter(created_at__lt=filters.created_before)
    if filters.email:
        subscriptions = subscriptions.filter(subscriber__email__icontains=filters.email)
    return subscriptions.order_by("id")


@router.get("/newsletters/{slug}/subscribers/{subscription_id}",
            response={200: SubscriberOut, **FAILS})
def get_subscriber(request, slug: str = SLUG, subscription_id: int = ID):
    return subscription_or_404(request, slug, subscription_id)[1]


@router.post("/newsletters/{slug}/subscribers",
             response={201: SubscriberOut, **WITH_BODY, 409: Conflict})
def add_subscriber(request, payload: SubscriberIn, slug: str = SLUG):
    """Invite an address (double opt-in), or add one that opted in already (`attested`).

    An address already on the list answers 409 with its subscription's id; nothing changes."""
    newsletter = newsletter_or_404(request, slug)
    form = SignupForm({"email": payload.email, "name": payload.name}, newsletter=newsletter)
    if not form.is_valid():
        errors = form.errors_by_field()
        raise HttpError(422, " ".join(message for messages in errors.values() for message in messages))
    email = form.cleaned_data["email"]
    existing = Subscription.objects.filter(subscriber__email__iexact=email, newsletter=newsletter).first()
    if existing is not None:
        return Status(409, {"detail": f"{email} is already on this list.", "id": existing.pk})
    try:
        subscription = services.subscription_add_by_creator(
            newsletter=newsletter, email=email, user=user_of(request), name=form.cleaned_data["name"],
            source=payload.source, attested=payload.attested,
        )
    except ValidationError as error:  # the address asked to be forgotten here
        return Status(409, {"detail": " ".join(error.messages), "id": None})
    except IntegrityError:  # added by someone else in between
        return Status(409, {"detail": f"{email} is already on this list.", "id": None})
    return Status(201, Subscription.objects.select_related("subscriber").get(pk=subscription.pk))


@router.patch("/newsletters/{slug}/subscribers/{subscription_id}",
              response={200: SubscriberOut, **WITH_BODY, 409: Error})
def change_subscriber(request, payload: SubscriberPatch, slug: str = SLUG, subscription_id: int = ID):
    """Rename, unsubscribe, or change the tier. Nobody is made active here: consent is the fan's."""
    _, subscription = subscription_or_404(request, slug, subscription_id)
    user = user_of(request)
    with transaction.atomic():
        if payload.name is not None and payload.name != subscription.subscriber.name:
            others = Subscription.objects.filter(subscriber_id=subscription.subscriber_id).exclude(
                newsletter__in=newsletters_of(request)
            )
            if others.exists():
                raise HttpError(409, "This person is also on another creator's list, so their name is not "
                                     "yours to change.")
            subscription.subscriber.name = payload.name
            subscription.subscriber.save(update_fields=["name"])
        if payload.status == Subscription.Status.UNSUBSCRIBED:
            services.subscriptions_unsubscribe(
                Subscription.objects.filter(pk=subscription.pk), actor="api", actor_user=user, detail="api"
            )
        if payload.tier is not None and payload.tier != subscription.tier:
            _change_tier(subscription, payload.tier, user)
    return Subscription.objects.select_related("subscriber").get(pk=subscription.pk)


def _change_tier(subscription, tier, user):
    """Comped is the creator's grant (billing's comp); paid comes from Stripe alone."""
    from billing import services as billing

    if tier == Subscription.Tier.PAID:
        raise HttpError(422, "The paid tier comes from a Stripe payment; grant the comped tier instead.")
    membership = getattr(subscription, "membership", None)
    try:
        if tier == Subscription.Tier.COMPED:
            billing.comp_grant(subscription_id=subscription.pk, user=user, actor="api")
        elif membership is not None and membership.source == membership.Source.COMP:
            billing.comp_end(membership.pk, user=user, detail="comp ended through the API", actor="api")
        else:
            raise HttpError(409, "This member pays through Stripe: the membership ends when it is canceled there.")
    except billing.BillingError as error:
        raise HttpError(409, str(error)) from error


@router.delete("/newsletters/{slug}/subscribers/{subscription_id}", response={204: None, **FAILS})
def erase_subscriber(request, slug: str = SLUG, subscription_id: int = ID):
    """Erase this person from this newsletter: their subscription and its history go; a digest of the
    address stays so an import cannot bring them back."""
    from subscribers.erasure import erase_subscriber as erase

    newsletter, subscription = subscription_or_404(request, slug, subscription_id)
    erase(subscription.subscriber_id, newsletter_ids=[newsletter.id], actor="api",
          actor_user=user_of(request))
    return Status(204, None)
