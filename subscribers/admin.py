from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ownedaudience.scoping import CreatorScopedAdmin, CreatorScopedTabularInline

from . import services
from .erasure import erase_subscriber, refuse_erased
from .models import OwedEmail, Subscriber, Subscription, SubscriptionEvent, Suppression


class SubscriptionInline(CreatorScopedTabularInline):
    """A shared subscriber's page lists only the creator's own subscriptions of theirs."""

    model = Subscription
    owner_path = "newsletter__owners"
    extra = 0
    fields = ("newsletter", "status", "tier", "source", "confirmed_at")
    readonly_fields = ("newsletter", "status", "tier", "source", "confirmed_at")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Subscriber)
class SubscriberAdmin(CreatorScopedAdmin):
    """A subscriber row may be shared by several creators' lists, so only a superuser edits it."""

    owner_path = "subscriptions__newsletter__owners"
    list_display = ("email", "name", "created_at")
    search_fields = ("email", "name")
    inlines = [SubscriptionInline]
    actions = ("erase_everywhere",)

    def get_readonly_fields(self, request, obj=None):
        return () if request.user.is_superuser else ("email", "name", "created_at")

    def has_erase_permission(self, request):
        return request.user.is_superuser

    @admin.action(description=_("Erase selected people everywhere (delete their data)"), permissions=["erase"])
    def erase_everywhere(self, request, queryset):
        """An operator's: from every newsletter here. A creator erases from their own lists, on Subscriptions."""
        if request.POST.get("post") != "yes":
            return _erase_confirmation(self, request, queryset, "erase_everywhere", everywhere=True)
        people = list(queryset.values_list("id", flat=True))
        for subscriber_id in people:
            erase_subscriber(subscriber_id, actor="operator", actor_user=request.user)
        self.message_user(request, ngettext("%d person erased everywhere.", "%d people erased everywhere.",
                                            len(people)) % len(people), messages.SUCCESS)


def _erase_confirmation(model_admin, request, queryset, action, *, everywhere):
    """The intermediate page of Django's own delete action: nothing is erased before a second yes."""
    return TemplateResponse(request, "subscribers/admin/erase_confirmation.html", {
        **model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
        "title": _("Erase these people?"), "queryset": queryset, "action": action, "everywhere": everywhere,
        "keeps_digest": settings.ERASURE_KEEP_DIGEST, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    })


class SubscriptionAddForm(forms.ModelForm):
    """Adding by address: an invitation (a confirmation email), or, with the creator's word that
    the address opted in already, active at once. A status or a tier is never typed."""

    email = forms.EmailField(label=_("Email address"), max_length=254)
    name = forms.CharField(label=_("Name"), max_length=200, required=False)
    attested = forms.BooleanField(
        label=_("This address already opted in to this list"), required=False,
        help_text=_("Tick only if this person agreed to receive this newsletter (for example on the platform "
                    "you are moving from): they become active without a confirmation email, and your "
                    "declaration is kept as their consent record. Unticked, they are sent an invitation to "
                    "confirm, and get nothing else until they do."),
    )

    class Meta:
        model = Subscription
        fields = ("newsletter", "source")

    def clean(self):
        cleaned = super().clean()
        email, newsletter = cleaned.get("email"), cleaned.get("newsletter")
        if email and newsletter and services.subscription_exists(email=email, newsletter=newsletter):
            raise forms.ValidationError(
                _("%(email)s is already on the list of %(newsletter)s.") % {"email": email, "newsletter": newsletter}
            )
        if email and newsletter:
            refuse_erased(email, newsletter.pk)
        return cleaned


class SubscriptionEventInline(CreatorScopedTabularInline):
    """The subscription's history, as the one writer recorded it: read only."""

    model = SubscriptionEvent
    owner_path = "subscription__newsletter__owners"
    extra = 0
    can_delete = False
    fields = ("at", "kind", "from_status", "to_status", "from_tier", "to_tier", "actor", "actor_user", "detail",
              "consent_form", "consent_at", "consent_ip")
    readonly_fields = fields
    ordering = ("at", "id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(CreatorScopedAdmin):
    owner_path = "newsletter__owners"
    list_display = ("subscriber", "newsletter", "status", "tier", "source", "created_at", "confirmed_at")
    list_filter = ("status", "tier", "newsletter", "source")
    search_fields = ("subscriber__email", "subscriber__name", "source")
    list_select_related = ("subscriber", "newsletter")
    actions = ("unsubscribe_selected", "erase_selected")
    inlines = [SubscriptionEventInline]
    # Status and tier change only through the one writer (subscribers.services.subscription_change):
    # by the fan, by actions here, by billing; never by typing them in.
    readonly_fields = (
        "subscriber",
        "newsletter",
        "status",
        "tier",
        "consent_form",
        "consent_text",
        "consent_at",
        "consent_ip",
        "consent_user_agent",
        "confirmed_at",
        "unsubscribed_at",
        "created_at",
        "updated_at",
    )

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = SubscriptionAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("email", "name", "newsletter", "source", "attested")
        return ("subscriber", "newsletter", "status", "tier", "source") + self.readonly_fields[4:]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)  # the source only: the rest is read-only
            return
        data = form.cleaned_data
        created = services.subscription_add_by_creator(
            newsletter=data["newsletter"], email=data["email"], name=data.get("name", ""),
            source=data.get("source", ""), attested=data.get("attested", False), user=request.user,
        )
        obj.pk = created.pk
        obj.refresh_from_db()

    @admin.action(description=_("Unsubscribe the selected subscriptions"))
    def unsubscribe_selected(self, request, queryset):
        changed = services.subscriptions_unsubscribe(
            queryset, actor="operator" if request.user.is_superuser else "creator", actor_user=request.user,
            detail="admin action",
        )
        self.message_user(
            request,
            ngettext("%d subscription unsubscribed.", "%d subscriptions unsubscribed.", changed) % changed,
            messages.SUCCESS,
        )

    @admin.action(description=_("Erase selected people (delete their data)"))
    def erase_selected(self, request, queryset):
        """Each person from the newsletters of their selected subscriptions, which are the creator's own
        (the queryset is scoped): another creator's list keeps them. The admin's history records none of it."""
        if request.POST.get("post") != "yes":
            return _erase_confirmation(self, request, queryset, "erase_selected", everywhere=False)
        people = {}
        for subscriber_id, newsletter_id in queryset.values_list("subscriber_id", "newsletter_id"):
            people.setdefault(subscriber_id, set()).add(newsletter_id)
        removed = sum(
            erase_subscriber(subscriber_id, newsletter_ids=sorted(newsletter_ids), actor="operator"
                             if request.user.is_superuser else "creator", actor_user=request.user)
            for subscriber_id, newsletter_ids in people.items()
        )
        self.message_user(request, ngettext("%d subscription erased, with its history and deliveries.",
                                            "%d subscriptions erased, with their history and deliveries.",
                                            removed) % removed, messages.SUCCESS)


@admin.register(OwedEmail)
class OwedEmailAdmin(CreatorScopedAdmin):
    """The transactional outbox, to see that confirmations and welcomes went out."""

    owner_path = "subscription__newsletter__owners"
    list_display = ("subscription", "kind", "status", "attempts", "created_at", "sent_at")
    list_filter = ("status", "kind")
    search_fields = ("subscription__subscriber__email",)
    list_select_related = ("subscription__subscriber", "subscription__newsletter")
    raw_id_fields = ("subscription",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Addresses nobody on this installation may mail; it spans every creator, so superusers only."""

    list_display = ("email", "reason", "created_at")
    list_filter = ("reason",)
    search_fields = ("email",)

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
