from django.contrib import admin

from .models import FeedbackEvent


@admin.register(FeedbackEvent)
class FeedbackEventAdmin(admin.ModelAdmin):
    """What SES, an SMTP relay or the bounce mailbox reported, for operators: one installation's sending
    account serves every creator."""

    list_display = ("at", "kind", "subtype", "recipient", "delivery_id", "message_id")
    list_filter = ("kind", "subtype")
    search_fields = ("recipient", "message_id", "sns_message_id")
    readonly_fields = tuple(field.name for field in FeedbackEvent._meta.fields)

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
