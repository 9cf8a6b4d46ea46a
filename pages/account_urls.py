"""/account/…: a member's page and the code login. Only these of allauth's views are routed (under
the names allauth reverses), so the public site offers no password login, signup or password reset."""

from allauth.account import views as allauth_views
from django.urls import path

from . import account

urlpatterns = [
    path("", account.member_account, name="member_account"),
    path("billing/<int:subscription_id>/", account.manage_billing, name="member_manage_billing"),
    path("login/", account.request_code, name="account_request_login_code"),
    # allauth's own way back to the start (a dead code, a stopped login): the same page.
    path("login/", account.request_code, name="account_login"),
    path("login/code/", account.confirm_code, name="account_confirm_login_code"),
    path("logout/", allauth_views.logout, name="account_logout"),
    path("inactive/", allauth_views.account_inactive, name="account_inactive"),
]
