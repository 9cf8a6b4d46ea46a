"""Whatever a stranger posts to the public signup endpoint: never a 500, never an active subscription."""

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from subscribers.models import OwedEmail, Subscriber, Subscription

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.usefixtures("fresh_rate_limits"),
]

NASTY = [
    "\r\nBcc: victim@example.com",
    "\nSubject: you won",
    "%0d%0aBcc:%20x@example.com",
    "\x00",
    "\x1b[31m",
    "\u202e\u2066",
    "\u200b",
    "\ud7ff\uffff",
    "=?utf-8?b?QmNjOiB4QGV4YW1wbGUuY29t?=",
    "<script>alert(1)</script>",
    '"quoted"@example.com',
    "a" * 5000,
    "@",
    "..",
    "ф@пример.рф",
    "😀@example.com",
]
ALLOWED_ANSWERS = {200, 400, 413, 429}

nasty = st.sampled_from(NASTY)
text = st.text(max_size=300)
value = st.one_of(text, nasty, st.tuples(text, nasty, text).map("".join))
email_like = st.one_of(value, st.emails(), st.tuples(st.emails(), nasty).map("".join))
form_data = st.fixed_dictionaries(
    {},
    optional={
        "email": email_like,
        "name": value,
        "website": st.one_of(st.just(""), value),
        "form": st.one_of(st.sampled_from(["page", "embed", "iframe", "api"]), value),
        "ref": value,
        "utm_source": value,
        "List-Unsubscribe": value,
    },
)
HYPOTHESIS = hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def news(make_creator, fresh_rate_limits):
    fresh_rate_limits.SIGNUP_RATE_PER_IP = "1000000/600"
    fresh_rate_limits.SIGNUP_RATE_PER_ADDRESS = "1000000/600"
    _, newsletter = make_creator("zine")
    return newsletter


def assert_nothing_active():
    assert not Subscription.objects.exclude(status=Subscription.Status.PENDING).exists()
    assert set(OwedEmail.objects.values_list("kind", flat=True)) <= {"confirmation"}
    for email in Subscriber.objects.values_list("email", flat=True):
        assert len(email) <= 254 and "\n" not in email and "\r" not in email and " " not in email


@HYPOTHESIS
@given(data=form_data, as_json=st.booleans())
def test_generated_form_posts_never_fail_and_never_activate(client, news, data, as_json):
    headers = {"HTTP_ACCEPT": "application/json"} if as_json else {}
    response = client.post(f"/{news.slug}/subscribe", data, **headers)
    assert response.status_code in ALLOWED_ANSWERS
    if as_json:
        assert "ok" in response.json()
    assert_nothing_active()


@HYPOTHESIS
@given(
    body=st.one_of(st.binary(max_size=4000), value.map(lambda s: s.encode("utf-8", "surrogatepass"))),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "application/json",
            "text/plain; charset=utf-7",
            "application/x-www-form-urlencoded; charset=nonsense",
        ]
    ),
)
def test_raw_bodies_of_any_shape_never_fail(client, news, body, content_type):
    response = client.generic("POST", f"/{news.slug}/subscribe", body, content_type=content_type)
    assert response.status_code in ALLOWED_ANSWERS
    assert_nothing_active()


def test_a_huge_body_and_a_lying_content_length_are_refused(client, news):
    big = client.generic(
        "POST",
        f"/{news.slug}/subscribe",
        b"email=" + b"a" * 3_000_000,
        content_type="application/x-www-form-urlencoded",
    )
    assert big.status_code == 413
    lying = client.generic(
        "POST",
        f"/{news.slug}/subscribe",
        b"email=a%40example.com",
        content_type="application/x-www-form-urlencoded",
        CONTENT_LENGTH="nonsense",
    )
    assert lying.status_code in ALLOWED_ANSWERS
    many = "&".join(f"f{i}=x" for i in range(1500)) + "&email=m%40example.com"
    assert (
        client.generic(
            "POST", f"/{news.slug}/subscribe", many.encode(), content_type="application/x-www-form-urlencoded"
        ).status_code
        in ALLOWED_ANSWERS
    )
    assert_nothing_active()
