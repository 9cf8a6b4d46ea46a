from django import forms
from django.contrib import admin, messages
from django.utils.translation import ngettext

from ownedaudience.scoping import CreatorScopedAdmin, CreatorScopedTabularInline

from . import services
from .models import OwedEmail, Subscriber, Subscription, Suppression


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

    def get_readonly_fields(self, request, obj=None):
        return () if request.user.is_superuser else ("email", "name", "created_at")


class SubscriptionAddForm(forms.ModelForm):
    """Adding by address: the subscriber row is found or made, never picked from a list."""

    email = forms.EmailField(max_length=254)
    name = forms.CharField(max_length=200, required=False)

    class Meta:
        model = Subscription
        fields = ("newsletter", "status", "tier", "source")

    def clean(self):
        cleaned = super().clean()
        email, newsletter = cleaned.get("email"), cleaned.get("newsletter")
        if email and newsletter and services.subscription_exists(email=email, newsletter=newsletter):
            raise forms.ValidationError(f"{email} is already on the list of {newsletter}.")
        return cleaned

    def save(self, commit=True):
        self.instance.subscriber = services.subscriber_ensure(
            email=self.cleaned_data["email"], name=self.cleaned_data.get("name", "")
        )
        return super().save(commit=commit)


@admin.register(Subscription)
class SubscriptionAdmin(CreatorScopedAdmin):
    owner_path = "newsletter__owners"
    list_display = ("subscriber", "newsletter", "status", "tier", "source", "created_at", "confirmed_at")
    list_filter = ("status", "tier", "newsletter", "source")
    search_fields = ("subscriber__email", "subscriber__name", "source")
    list_select_related = ("subscriber", "newsletter")
    actions = ["unsubscribe_selected"]
    readonly_fields = (
        "subscriber",
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
            return ("email", "name", "newsletter", "status", "tier", "source")
        return ("subscriber", "newsletter", "status", "tier", "source") + self.readonly_fields[1:]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields + ("newsletter",)

    @admin.action(description="Unsubscribe the selected subscriptions")
    def unsubscribe_selected(self, request, queryset):
        changed = services.subscriptions_unsubscribe(queryset)
        self.message_user(
            request,
            ngettext("%d subscription unsubscribed.", "%d subscriptions unsubscribed.", changed) % changed,
            messages.SUCCESS,
        )


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
