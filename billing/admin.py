"""Money in the admin: plans (made in Stripe from here), billing settings with write-only keys,
members with MRR, comps, and the stored Stripe events (operators only)."""

from datetime import datetime, time

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ownedaudience import links
from ownedaudience.scoping import CreatorScopedAdmin, visible
from subscribers.models import Subscription

from . import selectors, services
from .accounts import BillingNotSetUp
from .crypto import encrypt
from .models import BillingSettings, Membership, Plan, StripeEvent
from .money import format_amount, from_units


class PlanAddForm(forms.ModelForm):
    """Either the price to create (amount, currency, interval) or the id of a Price that exists."""

    price = forms.DecimalField(
        label=_("Price"), required=False, min_value=0, decimal_places=2,
        help_text=_("In the currency's units, e.g. 5 or 4.99 (VND: 50000)."),
    )
    existing_price_id = forms.CharField(
        label=_("Or an existing Stripe price id"), required=False, max_length=255,
        help_text=_("price_… of a monthly or yearly price in the Stripe account; amount and interval are read from it."),
    )

    class Meta:
        model = Plan
        fields = ("newsletter", "name", "interval", "currency", "trial_days", "position")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False  # a linked price brings its nickname
        self.fields["name"].help_text = _("What fans see, e.g. “Monthly” or “Supporter”; a linked price's nickname "
                                          "when empty.")

    def clean_currency(self):
        currency = self.cleaned_data["currency"].strip().lower()
        if len(currency) != 3 or not currency.isalpha():
            raise forms.ValidationError(_("A three-letter ISO currency code, like usd, eur or vnd."))
        return currency

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        newsletter, price_id = data.get("newsletter"), data.get("existing_price_id", "").strip()
        try:
            if price_id:
                plan = services.plan_link(newsletter=newsletter, price_id=price_id, name=data.get("name", ""),
                                          trial_days=data.get("trial_days") or 0)
            elif data.get("price"):
                if not data.get("name"):
                    raise forms.ValidationError(_("Name the plan."))
                currency = data["currency"]
                plan = services.plan_create(
                    newsletter=newsletter, name=data["name"], interval=data["interval"], currency=currency,
                    amount=from_units(data["price"], currency), trial_days=data.get("trial_days") or 0,
                )
            else:
                raise forms.ValidationError(_("Give a price, or the id of an existing Stripe price."))
        except BillingNotSetUp as error:
            raise forms.ValidationError(str(error)) from error
        except services.BillingError as error:
            raise forms.ValidationError(_("Stripe said: %(message)s") % {"message": error}) from error
        plan.position = data.get("position") or 0
        # The form's fields are copied onto the instance next: give them what Stripe has.
        data.update(name=plan.name, interval=plan.interval, currency=plan.currency, trial_days=plan.trial_days)
        self.instance = plan
        return data


@admin.register(Plan)
class PlanAdmin(CreatorScopedAdmin):
    owner_path = "newsletter__owners"
    list_display = ("name", "newsletter", "price", "interval", "trial_days", "active", "members")
    list_filter = ("newsletter", "active")
    change_fields = ("newsletter", "name", "active", "trial_days", "position", "price", "interval", "stripe_price_id",
                     "stripe_product_id")
    change_readonly = ("newsletter", "price", "interval", "stripe_price_id", "stripe_product_id")

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = PlanAddForm
            kwargs["fields"] = None
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("newsletter", "name", "interval", "price", "currency", "existing_price_id", "trial_days",
                    "position")
        return self.change_fields

    def get_readonly_fields(self, request, obj=None):
        return self.change_readonly if obj else ()

    @admin.display(description=_("price"))
    def price(self, obj):
        return obj.display_amount

    @admin.display(description=_("paying members"))
    def members(self, obj):
        return selectors.paying(obj.newsletter_id).filter(plan=obj).count()

    def has_delete_permission(self, request, obj=None):
        return False  # members may still pay through it; switch it off instead

    def changelist_view(self, request, extra_context=None):
        if not selectors.installation_ready() and not BillingSettings.objects.exclude(secret_key_encrypted="").exists():
            self.message_user(request, _(
                "Billing is not set up: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET for the installation, or "
                "enter a newsletter's own Stripe keys under Billing settings. Fans see no plans until then."),
                messages.WARNING)
        return super().changelist_view(request, extra_context)


class BillingSettingsForm(forms.ModelForm):
    secret_key = forms.CharField(
        label=_("Stripe secret key of this newsletter's own account"), required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("sk_live_… or sk_test_…, or a restricted key. Stored encrypted and never shown again; "
                    "leave empty to keep the one saved. Without one, the installation's Stripe account is used."),
    )
    webhook_secret = forms.CharField(
        label=_("Webhook signing secret"), required=False, widget=forms.PasswordInput(render_value=False),
        help_text=_("whsec_… of the endpoint you add in that Stripe account for the address below."),
    )
    forget_keys = forms.BooleanField(
        label=_("Forget this newsletter's own keys (go back to the installation's account)"), required=False,
    )

    class Meta:
        model = BillingSettings
        fields = ("newsletter", "publishable_key", "allow_promotion_codes", "refund_policy")

    def clean(self):
        data = super().clean()
        key = data.get("secret_key", "").strip()
        if key and not key.startswith(("sk_", "rk_")):
            self.add_error("secret_key", _("A Stripe secret key starts with sk_ (or rk_ for a restricted key)."))
        secret = data.get("webhook_secret", "").strip()
        if secret and not secret.startswith("whsec_"):
            self.add_error("webhook_secret", _("A webhook signing secret starts with whsec_."))
        has_key = bool(key) or (self.instance.pk and self.instance.has_own_account and not data.get("forget_keys"))
        has_secret = bool(secret) or (self.instance.pk and self.instance.webhook_secret_encrypted)
        if has_key and not has_secret and not data.get("forget_keys"):
            self.add_error("webhook_secret", _("With a key of its own, the newsletter needs its webhook secret too."))
        return data

    def save(self, commit=True):
        settings_row = super().save(commit=False)
        if self.cleaned_data.get("forget_keys"):
            settings_row.secret_key_encrypted = settings_row.webhook_secret_encrypted = ""
        if self.cleaned_data.get("secret_key"):
            settings_row.secret_key_encrypted = encrypt(self.cleaned_data["secret_key"].strip())
        if self.cleaned_data.get("webhook_secret"):
            settings_row.webhook_secret_encrypted = encrypt(self.cleaned_data["webhook_secret"].strip())
        if commit:
            settings_row.save()
        return settings_row


@admin.register(BillingSettings)
class BillingSettingsAdmin(CreatorScopedAdmin):
    owner_path = "newsletter__owners"
    form = BillingSettingsForm
    list_display = ("newsletter", "account", "allow_promotion_codes", "refund_policy")
    readonly_fields = ("account", "webhook_url")

    def get_fields(self, request, obj=None):
        return ("newsletter", "account", "secret_key", "webhook_secret", "forget_keys", "webhook_url",
                "publishable_key", "allow_promotion_codes", "refund_policy")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("newsletter",) if obj else ())

    @admin.display(description=_("Stripe account"))
    def account(self, obj):
        if obj.pk and obj.has_own_account:
            return _("The newsletter's own (key saved, encrypted)")
        return _("The installation's") if selectors.installation_ready() else _("None: billing is not set up")

    @admin.display(description=_("Webhook address for its own account"))
    def webhook_url(self, obj):
        if not obj.pk:
            return _("Shown once saved.")
        return links.absolute(f"/billing/stripe/webhook/{obj.webhook_token}/")


def _revenue_lines(request):
    """One line per newsletter with plans: paying members and MRR, from the stored Stripe state."""
    newsletters = (visible(request, Plan.objects.all(), admin.site).order_by("newsletter__name")
                   .values_list("newsletter_id", "newsletter__name").distinct())
    lines = []
    for newsletter_id, name in newsletters:
        figures = selectors.revenue(newsletter_id)
        mrr = ", ".join(format_amount(amount, currency) for currency, amount in figures["mrr"].items()) or "0"
        lines.append(_("%(name)s: %(members)d paying (%(trialing)d in trial), %(comped)d comped, MRR %(mrr)s") % {
            "name": name, **figures, "mrr": mrr})
    return lines


class CompForm(forms.ModelForm):
    until = forms.DateField(label=_("Until (included)"), required=False,
                            help_text=_("Empty: until you end it."), widget=forms.DateInput(attrs={"type": "date"}))

    class Meta:
        model = Membership
        fields = ("subscription",)


@admin.register(Membership)
class MembershipAdmin(CreatorScopedAdmin):
    owner_path = "subscription__newsletter__owners"
    list_display = ("email", "newsletter", "source", "plan", "status", "current_period_end", "cancel_at_period_end",
                    "comp_until")
    list_filter = ("source", "status", "subscription__newsletter")
    search_fields = ("subscription__subscriber__email", "stripe_customer_id", "stripe_subscription_id")
    list_select_related = ("subscription__subscriber", "subscription__newsletter", "plan")
    raw_id_fields = ("subscription",)
    actions = ["end_comps"]
    readonly = ("subscription", "source", "plan", "status", "current_period_end", "cancel_at_period_end", "ended_at",
                "refunded_at", "comp_until", "granted_by", "stripe_customer_id", "stripe_subscription_id",
                "checkout_session_id", "created_at", "updated_at")

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = CompForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ("subscription", "until") if obj is None else self.readonly

    def get_readonly_fields(self, request, obj=None):
        return self.readonly if obj else ()

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)  # Stripe's state, not a form

    def save_model(self, request, obj, form, change):
        until = form.cleaned_data.get("until")
        end = timezone.make_aware(datetime.combine(until, time.max)) if until else None
        try:
            membership = services.comp_grant(subscription_id=obj.subscription_id, until=end, user=request.user)
        except services.BillingError as error:
            self.message_user(request, str(error), messages.ERROR)
            membership = Membership.objects.get(subscription_id=obj.subscription_id)
        obj.pk, obj.id = membership.pk, membership.pk

    def get_field_queryset(self, db, db_field, request):
        queryset = super().get_field_queryset(db, db_field, request)
        if db_field.name == "subscription" and queryset is not None:
            return queryset.filter(status__in=[Subscription.Status.ACTIVE, Subscription.Status.PENDING])
        return queryset

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "revenue": _revenue_lines(request)})

    @admin.action(description=_("End the selected complimentary memberships"))
    def end_comps(self, request, queryset):
        ended = sum(services.comp_end(pk, user=request.user) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, _("%(count)d comps ended.") % {"count": ended})

    @admin.display(description=_("email"), ordering="subscription__subscriber__email")
    def email(self, obj):
        return obj.subscription.subscriber.email

    @admin.display(description=_("newsletter"))
    def newsletter(self, obj):
        return obj.subscription.newsletter


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    """Every event Stripe sent, for operators (the installation's account serves every creator)."""

    list_display = ("event_id", "type", "account", "received_at", "applied_at", "attempts", "short_error")
    list_filter = ("type",)
    search_fields = ("event_id",)

    def has_module_permission(self, request):
        return request.user.is_superuser

    has_view_permission = has_module_permission

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("error"))
    def short_error(self, obj):
        return format_html("<span title='{}'>{}</span>", obj.error, obj.error[:60]) if obj.error else ""
