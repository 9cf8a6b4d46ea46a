"""portability.formats: other platforms' subscriber exports as a stream of Row / Rejected.

The samples and their rules are tests/fixtures/imports/ (copied from the shared samples). The
counts are the README's expected JSON lines, computed from the rows with the same merge the
import does in SQL: one entry per email key, the worst status and the best tier winning.
"""

import csv
import io
import json
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import given, settings
from hypothesis import strategies as st

from portability.formats import FORMATS, OWN_HEADER, FormatError, Rejected, Row, detect, read

SAMPLES = Path(__file__).parent / "fixtures" / "imports"
STATUS_RANK = {"active": 0, "pending": 1, "unsubscribed": 2, "bounced": 3, "complained": 4}
TIER_RANK = {"free": 0, "comped": 1, "paid": 2}


def tally(records):
    """The README's counting convention, as portability.importing merges and counts in SQL."""
    status, tier, rejected = {}, {}, 0
    for record in records:
        if isinstance(record, Rejected):
            rejected += 1
            continue
        status[record.key] = max(status.get(record.key, record.status), record.status, key=STATUS_RANK.get)
        tier[record.key] = max(tier.get(record.key, record.tier), record.tier, key=TIER_RANK.get)
    active = [key for key, value in status.items() if value == "active"]
    return {"active": len(active), "suppressed": len(status) - len(active),
            "paid": sum(tier[key] != "free" for key in active), "rejected": rejected}


def records(data, **options):
    return list(read(io.BytesIO(data), **options))


def sample(name, **options):
    with open(SAMPLES / name, "rb") as stream:
        return list(read(stream, name=name, **options))


def people(name, **options):
    return {record.key.split("@")[0]: record for record in sample(name, **options) if isinstance(record, Row)}


def expected_lines():
    found = re.findall(r"^\| `([\w.]+\.csv)` \| `(\{.*\})` \|$", (SAMPLES / "README.md").read_text(), re.MULTILINE)
    return [(name, json.loads(line)) for name, line in found]


def test_the_readme_gives_eight_expected_lines():
    assert [name for name, _ in expected_lines()] == [
        "substack.csv", "mailchimp_subscribed.csv", "mailchimp_unsubscribed.csv", "mailchimp_cleaned.csv",
        "ghost.csv", "kit.csv", "buttondown.csv", "beehiiv.csv"]


@pytest.mark.parametrize(("name", "expected"), expected_lines())
def test_every_sample_counts_as_the_readme_says(name, expected):
    assert tally(sample(name)) == expected


@pytest.mark.parametrize(("name", "format"), [
    ("substack.csv", "substack"), ("substack_export/email_list.example-pub.csv", "substack"),
    ("substack_dashboard_export.csv", "substack_dashboard"), ("mailchimp_subscribed.csv", "mailchimp"),
    ("mailchimp_unsubscribed.csv", "mailchimp"), ("mailchimp_cleaned.csv", "mailchimp"), ("ghost.csv", "ghost"),
    ("kit.csv", "kit"), ("buttondown.csv", "buttondown"), ("beehiiv.csv", "beehiiv"),
])
def test_each_sample_is_detected_by_its_header(name, format):
    header = (SAMPLES / name).read_text().splitlines()[0].split(",")
    assert detect(header) == format
    with open(SAMPLES / name, "rb") as stream:
        assert read(stream).format == format
    assert tally(sample(name)) == tally(sample(name, format=format))  # asking for it changes nothing


def test_the_samples_are_the_shared_copies_with_ghost_crlf():
    assert (SAMPLES / "ghost.csv").read_bytes().count(b"\r\n") == 13
    assert b"\r" not in (SAMPLES / "substack.csv").read_bytes()


# The people the README names ----------------------------------------------------------------

def test_substack_paid_with_email_disabled_stays_paid_but_not_mailable():
    readers = people("substack.csv")
    assert (readers["liam.obrien"].status, readers["liam.obrien"].tier) == ("unsubscribed", "paid")
    assert readers["liam.obrien"].note == "email_disabled"
    assert (readers["carlos.mendoza"].status, readers["carlos.mendoza"].tier) == ("unsubscribed", "free")
    assert {key for key, row in readers.items() if row.tier == "paid"} == {
        "jonas.weber", "priya.raman", "hiro.tanaka", "liam.obrien"}
    grace = readers["grace.okafor"]  # first_payment_at set, active_subscription=false
    assert (grace.status, grace.tier, grace.note) == ("active", "free", "former paid member")
    assert readers["jonas.weber"].created_at == datetime(2022, 3, 2, 11, 40, 3, 551000, tzinfo=UTC)


def test_substack_deletion_request_placeholders_are_rejected_with_their_reason():
    [rejected] = [record for record in sample("substack.csv") if isinstance(record, Rejected)]
    assert rejected == Rejected(12, "8d41c2f0a9be@deletion-request.substack.com",
                                "Substack deletion-request placeholder")


def test_substack_dashboard_tiers_from_subscription_type():
    readers = people("substack_dashboard_export.csv")
    assert {key: row.tier for key, row in readers.items()} == {
        "amelia.hart": "free", "jonas.weber": "paid", "hiro.tanaka": "paid", "nguyen.thi.lan": "comped",
        "carlos.mendoza": "free"}
    assert readers["amelia.hart"].name == "Amelia Hart" and readers["amelia.hart"].source == "substack"
    assert readers["amelia.hart"].created_at == datetime(2023, 1, 14, tzinfo=UTC)


def test_substacks_other_subscribers_export_tells_comps_and_gifts():
    data = (b"email,expiry,email_disabled,prefer_digests,stripe_connected_customer_id,type\n"
            b"a@x.com,2027-01-01T00:00:00.000Z,false,false,cus_1,paid\nb@x.com,,false,false,,comp\n"
            b"c@x.com,,true,false,,gift\n")
    rows = records(data)
    assert [(row.tier, row.status) for row in rows] == [
        ("paid", "active"), ("comped", "active"), ("comped", "unsubscribed")]


def test_mailchimp_status_comes_from_which_file():
    assert {row.status for row in people("mailchimp_subscribed.csv").values()} == {"active"}
    assert {(row.status, row.note) for row in people("mailchimp_unsubscribed.csv").values()} == {
        ("unsubscribed", "unsubscribed")}
    cleaned = people("mailchimp_cleaned.csv")
    assert {(row.status, row.note) for row in cleaned.values()} == {("bounced", "cleaned")}
    assert cleaned["jdoe"].unsubscribed_at == datetime(2020, 3, 23, 17, 30, 5, tzinfo=UTC)


def test_mailchimp_fields_and_a_tags_cell_with_quoted_commas():
    fans = people("mailchimp_subscribed.csv")
    olivia = fans["olivia.brown"]  # TAGS: """Newsletter"",""Founding Reader""" at the end of the row
    assert (olivia.line, olivia.name, olivia.tier) == (2, "Olivia Brown", "free")
    assert olivia.created_at == olivia.consent_at == datetime(2019, 3, 11, 10, 2, 44, tzinfo=UTC)
    assert olivia.confirmed_at == datetime(2019, 3, 11, 10, 2, 44, tzinfo=UTC)
    assert fans["william.chen"].name == "William Chen"  # Company "Chen, Lee & Partners" before the dates
    assert fans["william.chen"].created_at == datetime(2019, 12, 1, 15, 45, 12, tzinfo=UTC)
    assert fans["mateo.garcia"].name == "Mateo García"
    assert [row.line for row in fans.values()] == list(range(2, 14))
    header = (SAMPLES / "mailchimp_subscribed.csv").read_bytes().split(b"\n")[0]
    data = header + (b'\nann@x.com,Ann,Lee,"Books, Films",,,2,2020-01-02 03:04:05,198.51.100.7,'
                     b'2020-01-02 03:05:00,,,,,,,,,2021-01-01 00:00:00,1,e,"a note, with ""quotes""",'
                     b'"""Books, Films"",""VIP"""\nbob@x.com,Bob,,,,,1,,,,,,,,,,,,,2,f,,\n')
    ann, bob = records(data)
    assert (ann.email, ann.name, ann.consent_ip, bob.line, bob.name) == ("ann@x.com", "Ann Lee", "198.51.100.7", 3, "Bob")
    assert ann.confirmed_at == datetime(2020, 1, 2, 3, 5, tzinfo=UTC)


def test_ghost_paid_comped_and_unsubscribed():
    members = people("ghost.csv")
    assert members["grace.okafor"].tier == "comped"
    assert {key for key, row in members.items() if row.tier == "paid"} == {"jonas.weber", "hiro.tanaka"}
    assert {key for key, row in members.items() if row.status != "active"} == {"carlos.mendoza", "liam.obrien"}
    assert members["amelia.hart"].line == 2 and members["noah.kim"].line == 13  # CRLF: one line each
    assert members["nguyen.thi.hong.nhung"].name == "Nguyễn Thị Hồng Nhung"
    assert members["jonas.weber"].created_at == datetime(2022, 3, 2, 11, 40, 3, tzinfo=UTC)


def test_kit_states():
    fans = people("kit.csv")
    assert {key: row.status for key, row in fans.items() if row.status != "active"} == {
        "carlos.mendoza": "unsubscribed", "hiro.tanaka": "pending", "liam.obrien": "bounced",
        "tran.minh.khoa": "complained"}
    assert fans["carlos.mendoza"].note == "cancelled" and fans["hiro.tanaka"].note == "inactive"
    assert fans["nguyen.thi.hong.nhung"].name == "Hồng Nhung Nguyễn Thị"
    assert {row.tier for row in fans.values()} == {"free"}


def test_kit_other_spellings_of_its_header():
    rows = records(b"First Name,Email Address,State,Created At,Tags\nAmy,amy@x.com,unsubscribed,2023-01-14,\n")
    assert detect(["First Name", "Email Address", "State", "Created At", "Tags"]) == "kit"
    assert (rows[0].status, rows[0].name, rows[0].created_at) == ("unsubscribed", "Amy", datetime(2023, 1, 14, tzinfo=UTC))


def test_buttondown_types():
    fans = people("buttondown.csv")
    noah = fans["noah.kim"]
    assert (noah.status, noah.tier, noah.note) == ("active", "free", "churned")
    assert fans["grace.okafor"].tier == "comped"
    assert {key for key, row in fans.items() if row.tier == "paid"} == {"jonas.weber", "emma.dubois"}
    assert (fans["hiro.tanaka"].status, fans["hiro.tanaka"].note) == ("pending", "unactivated")
    assert (fans["liam.obrien"].status, fans["liam.obrien"].note) == ("bounced", "undeliverable")
    carlos = fans["carlos.mendoza"]
    assert carlos.status == "unsubscribed"
    assert carlos.unsubscribed_at == datetime(2024, 4, 8, 17, 9, 32, 596959, tzinfo=UTC)
    amelia = fans["amelia.hart"]
    assert (amelia.consent_ip, amelia.source) == ("198.51.100.10", "https://buttondown.com/fieldnotes")
    assert fans["jonas.weber"].source == "twitter"  # utm_source before referrer_url
    assert amelia.created_at == datetime(2023, 1, 14, 9, 12, 44, 120000, tzinfo=UTC)
    assert fans["nguyen.thi.hong.nhung"].name == "Hồng Nhung Nguyễn Thị"  # from the metadata dict


@pytest.mark.parametrize("kind", ["trialed", "churning", "past_due", "paused"])
def test_buttondown_still_paid_for_now(kind):
    [row] = records(f"id,email,subscriber_type\n1,a@x.com,{kind}\n".encode())
    assert (row.status, row.tier, row.note) == ("active", "paid", kind)


def test_beehiiv_unsubscribed_at_wins_over_status():
    fans = people("beehiiv.csv")
    liam = fans["liam.obrien"]  # status says active
    assert (liam.status, liam.unsubscribed_at) == ("unsubscribed", datetime(2024, 3, 13, 11, 33, 53, tzinfo=UTC))
    assert (fans["carlos.mendoza"].status, fans["carlos.mendoza"].note) == ("unsubscribed", "inactive")
    assert fans["hiro.tanaka"].status == "pending"
    assert fans["grace.okafor"].tier == "comped"  # premium without a Stripe customer
    assert {key for key, row in fans.items() if row.tier == "paid"} == {"jonas.weber", "emma.dubois"}
    # "Subscription Date (Substack)" is preferred to created_at
    assert fans["nguyen.thi.hong.nhung"].created_at == datetime(2021, 11, 2, 8, 0, tzinfo=UTC)
    assert fans["amelia.hart"].created_at == datetime(2023, 1, 14, 9, 12, 44, tzinfo=UTC)


def test_our_own_export_round_trips():
    header = ("email,name,status,tier,source,created_at,confirmed_at,unsubscribed_at,consent_form,consent_text,"
              "consent_at,consent_ip,consent_user_agent")
    line = ('Ann@X.com,Ann,active,comped,bio-page,2024-01-02T03:04:05+00:00,2024-01-02T03:05:00+00:00,,signup,'
            '"I agree, yes",2024-01-02T03:04:05+00:00,2001:DB8::1,Mozilla/5.0\n'
            'bob@x.com,,bounced,paid,,2024-01-02T03:04:05+02:00,,2024-02-01T00:00:00Z,,,,not-an-ip,\n')
    reader = read(io.BytesIO(f"{header}\n{line}".encode()))
    assert reader.format == "ownedaudience"
    ann, bob = reader
    assert ann == Row(2, "Ann@X.com", "ann@x.com", "active", "comped", "Ann", "bio-page",
                      datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2024, 1, 2, 3, 5, tzinfo=UTC), None,
                      datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2001:db8::1", "", "signup", "I agree, yes",
                      "Mozilla/5.0")
    assert (bob.status, bob.tier, bob.consent_ip, bob.created_at) == (
        "bounced", "paid", None, datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC))


# Robustness ---------------------------------------------------------------------------------

def test_bom_crlf_and_no_final_newline_read_the_same():
    plain = (SAMPLES / "kit.csv").read_bytes()
    variants = [plain, b"\xef\xbb\xbf" + plain, plain.replace(b"\n", b"\r\n"), plain.rstrip(b"\n"),
                plain.replace(b"\n", b"\r"),  # old Mac line endings
                b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n").rstrip(b"\r\n")]
    results = [records(data) for data in variants]
    assert all(result == results[0] for result in results) and len(results[0]) == 12


def test_a_bom_before_a_quoted_header_name():
    [row] = records(b'\xef\xbb\xbf"Email Address","First Name",MEMBER_RATING\r\nann@x.com,Ann,3\r\n')
    assert (row.email, row.name, row.status) == ("ann@x.com", "Ann", "active")


def test_header_names_in_any_case_quoted_and_padded():
    data = b' "EMAIL" ,  Subscribed_To_Emails ,"Name"\nann@x.com,false,Ann\n'
    [row] = records(data)
    assert (row.status, row.name) == ("unsubscribed", "Ann")


def test_quoted_cells_with_commas_quotes_and_newlines_keep_later_line_numbers_right():
    data = (b'email,name,note,subscribed_to_emails\n'
            b'a@x.com,"Lee, Ann","said ""hi""\nover two\nlines",true\n'
            b'b@x.com,Bob,,true\r\n'
            b'"c@x.com","multi\r\nline",,false\n'
            b'not-an-email,,,true\n')
    rows = records(data)
    assert [(record.line, getattr(record, "email", None)) for record in rows] == [
        (2, "a@x.com"), (5, "b@x.com"), (6, "c@x.com"), (8, None)]
    assert rows[0].name == "Lee, Ann" and rows[2].name == "multi\r\nline"
    assert rows[3] == Rejected(8, "not-an-email", "not a valid email address")


def test_extra_unknown_columns_short_rows_long_rows_and_blank_lines():
    data = (b"email,name,custom_field,subscribed_to_emails,complimentary_plan,another\n"
            b"a@x.com,Ann,whatever,true,true,x\n"
            b"\n"
            b"b@x.com,Bob\n"  # fewer cells: the rest are empty
            b",,,,,\n"
            b"   \n"
            b"c@x.com,Cy,z,false,false,y,extra,cells,here\n"
            b"\r\n")
    rows = records(data)
    assert [(row.line, row.email, row.name, row.status, row.tier) for row in rows] == [
        (2, "a@x.com", "Ann", "active", "comped"), (4, "b@x.com", "Bob", "active", "free"),
        (7, "c@x.com", "Cy", "unsubscribed", "free")]


def test_a_row_with_content_but_no_email_is_rejected_as_empty():
    rows = records(b"email,name,subscribed_to_emails\n  ,Ann,true\n,\"Bob\",true\n")
    assert rows == [Rejected(2, "  ", "empty email"), Rejected(3, "", "empty email")]


@pytest.mark.parametrize("email", [
    "pham.thu.ha+news@example.vn", "james.o'connor@example.ie", "Jane.Doe@Example.COM", "a_b-c@sub.example-one.co.uk",
    "idn@exämple.org", "dũng@example.org", "x@xn--exmple-cua.org", "user@example.xn--p1ai", "a@b.cd",
    "  padded@example.com\t",
])
def test_valid_addresses(email):
    [row] = records(f"email,subscribed_to_emails\n\"{email}\",true\n".encode())
    assert (row.email, row.key) == (email.strip(), email.strip().lower())


@pytest.mark.parametrize("email", [
    "foo@", "a b@c.com", "x@localhost", "double@@example.com", "@example.com", "jane@example", "a..b@x.com",
    ".a@x.com", "a.@x.com", "a@-x.com", "a@x-.com", "a@x_y.com", "a@x.c0m", "a@x.c", "a@x..com", "a@x.com.",
    "<a@x.com>", "Ann <a@x.com>", "a@x.com,b@x.com", "a" * 250 + "@x.com",
])
def test_invalid_addresses(email):
    [rejected] = records(f"email,subscribed_to_emails\n\"{email}\",true\n".encode())
    assert rejected == Rejected(2, email[:254], "not a valid email address")


def test_an_empty_email_cell_is_rejected():
    assert records(b"email,subscribed_to_emails\n,true\n") == [Rejected(2, "", "empty email")]


def test_keys_fold_case_only():
    keys = [row.key for row in records(b"email,status,tier\nJane+News@X.com,active,free\njane@x.com,active,free\n"
                                       b"JANE@X.COM,unsubscribed,free\n")]
    assert keys == ["jane+news@x.com", "jane@x.com", "jane@x.com"]
    assert tally(records(b"email,status,tier\njane@x.com,active,paid\nJANE@X.COM ,bounced,free\n")) == {
        "active": 0, "suppressed": 1, "paid": 0, "rejected": 0}


@pytest.mark.parametrize(("cell", "expected"), [
    ("2027-03-02T11:41:10.000Z", datetime(2027, 3, 2, 11, 41, 10, tzinfo=UTC)),
    ("2024-03-13 00:03:09.183465+00:00", datetime(2024, 3, 13, 0, 3, 9, 183465, tzinfo=UTC)),
    ("2023-03-24 10:23:10 UTC", datetime(2023, 3, 24, 10, 23, 10, tzinfo=UTC)),
    ("2019-03-11 10:02:44", datetime(2019, 3, 11, 10, 2, 44, tzinfo=UTC)),
    ("2023-01-14", datetime(2023, 1, 14, tzinfo=UTC)),
    ("2023-01-14T09:12:44+02:00", datetime(2023, 1, 14, 7, 12, 44, tzinfo=UTC)),
    (" 2023-01-14T09:12:44Z ", datetime(2023, 1, 14, 9, 12, 44, tzinfo=UTC)),
    ("2023-01-14 09:12:44 +0100", datetime(2023, 1, 14, 8, 12, 44, tzinfo=UTC)),
    ("yesterday", None), ("2023-02-30", None), ("0", None), ("", None), ("N/A", None),
])
def test_dates_of_every_platform_become_aware_utc_or_none(cell, expected):
    for data in (f"email,subscribed_to_emails,created_at\na@x.com,true,{cell}\n",  # ghost: _dt
                 f"Email Address,OPTIN_TIME,CONFIRM_TIME\na@x.com,{cell},{cell}\n",  # mailchimp: zone-less first
                 f"email,status,tier,created_at\na@x.com,active,free,{cell}\n",  # beehiiv
                 f"email,active_subscription,email_disabled,created_at\na@x.com,false,false,{cell}\n"):
        [row] = records(data.encode())
        assert row.created_at == expected, data
        assert expected is None or row.created_at.tzinfo is UTC


@pytest.mark.parametrize(("cell", "expected"), [
    ("198.51.100.7", "198.51.100.7"), (" 203.0.113.1 ", "203.0.113.1"), ("2001:DB8:0:0::1", "2001:db8::1"),
    ("::ffff:192.0.2.1", "::ffff:192.0.2.1"), ("999.1.1.1", None), ("1.2.3", None), ("fe80::1%eth0", None),
    ("localhost", None), ("", None),
])
def test_consent_ip_only_a_valid_literal(cell, expected):
    [row] = records(f"Email Address,OPTIN_TIME,OPTIN_IP\na@x.com,,{cell}\n".encode())
    assert row.consent_ip == expected


def test_a_huge_quoted_cell_is_one_rejected_row_and_the_next_rows_read():
    huge = "x" * 300_000
    data = f'email,name,subscribed_to_emails\na@x.com,"{huge}",true\nb@x.com,Bob,true\n'.encode()
    rows = records(data)
    assert isinstance(rows[0], Rejected) and rows[0].line == 2 and "field larger than field limit" in rows[0].reason
    assert rows[-1].email == "b@x.com" and rows[-1].line == 3


def test_a_huge_unquoted_cell_is_read():
    data = f'email,name,subscribed_to_emails\na@x.com,{"x" * 300_000},true\nb@x.com,Bob,true\n'.encode()
    assert [(row.line, len(row.name)) for row in records(data)] == [(2, 300_000), (3, 3)]


def test_latin1_bytes_are_a_format_error_naming_the_line():
    data = "email,name,subscribed_to_emails\na@x.com,Ann,true\nb@x.com,Jos\xe9,true\n".encode("latin-1")
    with pytest.raises(FormatError, match=r"not UTF-8.*line 3.*0xe9, byte 61 of the file"):
        records(data)


def test_latin1_far_down_a_big_file_names_its_line():
    lines = [b"email,subscribed_to_emails\n"] + [b"fan%d@x.com,true\n" % i for i in range(20_000)]
    lines.insert(15_000, "zo\xeb@x.com,true\n".encode("latin-1"))
    reader = read(io.BytesIO(b"".join(lines)))
    with pytest.raises(FormatError, match="line 15001 "):
        list(reader)


def test_latin1_in_the_header_is_a_format_error_at_the_call():
    with pytest.raises(FormatError, match="line 1 "):
        read(io.BytesIO("e-mail,pr\xe9nom\n".encode("latin-1")))


def test_latin1_in_a_zip_member_names_the_member_and_its_line(tmp_path):
    data = "email,active_subscription,email_disabled\na@x.com,false,false\nb\xe9@x.com,false,false\n"
    path = zipped(tmp_path, {"email_list.other.csv": (SAMPLES / "substack.csv").read_bytes(),
                             "email_list.pub.csv": data.encode("latin-1")})
    with open(path, "rb") as stream, pytest.raises(FormatError, match=r"^email_list.pub.csv \(in the zip\) is not "
                                                                      r"UTF-8 text: line 3 has a byte"):
        read(stream, name="export.zip")


def test_latin1_in_a_stream_that_cannot_seek():
    data = b"email,active_subscription,email_disabled\n" + b"a@x.com,false,false\n" * 3 + b"\xe9\n"
    with pytest.raises(FormatError, match="line 5 has a byte UTF-8 cannot read \\(0xe9, byte 102 of"):
        list(read(CountingStream(data)))


def test_django_uploaded_files_csv_and_zip(tmp_path):
    with open(SAMPLES / "ghost.csv", "rb") as sample_file:
        upload = File(sample_file, name="members.csv")
        assert tally(read(upload, name=upload.name)) == {"active": 10, "suppressed": 2, "paid": 3, "rejected": 0}
    names = ["subscribed", "unsubscribed", "cleaned"]
    archive = zipped(tmp_path, {f"{kind}_members_export_1.csv": (SAMPLES / f"mailchimp_{kind}.csv").read_bytes()
                                for kind in names})
    upload = SimpleUploadedFile("audience.zip", archive.read_bytes())
    assert tally(read(upload, name=upload.name)) == {"active": 12, "suppressed": 8, "paid": 0, "rejected": 0}
    assert not upload.closed


def test_a_file_that_is_no_subscriber_list_says_what_its_first_line_is():
    with open(SAMPLES / "substack_export/posts.csv", "rb") as stream, pytest.raises(
            FormatError, match=r"looks like none of substack, .*the first line is: post_id,post_date"):
        read(stream)
    with pytest.raises(FormatError, match="empty"):
        read(io.BytesIO(b""))
    with pytest.raises(FormatError, match="empty"):
        read(io.BytesIO(b"\xef\xbb\xbf\r\n\n  \n"))


def test_asking_for_a_format_needs_an_email_column():
    with pytest.raises(FormatError, match="--format ghost was asked for but the header has no email column"):
        read(io.BytesIO(b"name,note\nAnn,hi\n"), format="ghost")
    with pytest.raises(FormatError, match="Unknown format"):
        read(io.BytesIO(b"email\n"), format="medium")
    # a header that detection does not know, read as the format asked for
    [row] = records(b"Email,Subscribed_To_Emails_Flag\nann@x.com,x\n", format="ghost")
    assert row.status == "active"


def test_a_header_alone_gives_no_records():
    assert records(b"email,active_subscription,expiry,plan,email_disabled,created_at,first_payment_at\n") == []


def test_detect_reads_the_header_alone():
    assert detect(["\ufeffEmail Address", "MEMBER_RATING", "UNSUB_TIME"]) == "mailchimp"
    assert detect(["email", "status", "tier", "created_at"]) == "beehiiv"
    assert detect(["id", "email", "subscriber_type"]) == "buttondown"
    assert detect(["EMAIL", "Name", "Subscription Type"]) == "substack_dashboard"
    assert set(FORMATS) == {"substack", "substack_dashboard", "mailchimp", "ghost", "kit", "buttondown", "beehiiv",
                            "ownedaudience"}
    with pytest.raises(FormatError, match="the first line is: name,phone"):
        detect(["name", "phone"])


def zipped(tmp_path, members):
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_substack_full_export_zip_reads_the_email_list_only(tmp_path):
    export = SAMPLES / "substack_export"
    members = {str(path.relative_to(export)): path.read_bytes() for path in sorted(export.rglob("*")) if path.is_file()}
    members["posts/148230017.opens.csv"] = b"post_id,timestamp,email,country\n148230017,2024-01-01,a@x.com,US\n"
    members["email_list.example-pub.csv"] = members["email_list.example-pub.csv"] + b"foo@,false,,,false,,\n"
    path = zipped(tmp_path, members)
    with open(path, "rb") as stream:
        reader = read(stream, name="anything.bin")  # told by its first bytes, not only by its name
        rows = list(reader)
    assert reader.format == "substack"
    assert tally(rows) == {"active": 9, "suppressed": 2, "paid": 3, "rejected": 2}
    rejected = [row for row in rows if isinstance(row, Rejected)]
    assert rejected == [
        Rejected(12, "8d41c2f0a9be@deletion-request.substack.com",
                 "email_list.example-pub.csv: Substack deletion-request placeholder"),
        Rejected(14, "foo@", "email_list.example-pub.csv: not a valid email address")]


def test_a_mailchimp_audience_zip_reads_its_three_files(tmp_path):
    names = {"subscribed": "subscribed_members_export_3f1a.csv", "unsubscribed": "unsubscribed_members_export_3f1a.csv",
             "cleaned": "cleaned_members_export_3f1a.csv"}
    members = {names[kind]: (SAMPLES / f"mailchimp_{kind}.csv").read_bytes() for kind in names}
    members[names["cleaned"]] += b"a b@c.com,,,,,,1,,,,,,,,,,,,2021-01-01 00:00:01,,,1,2,,\n"
    with open(zipped(tmp_path, members), "rb") as stream:
        reader = read(stream, name="audience_export.zip")
        rows = list(reader)
    assert reader.format == "mailchimp"
    assert tally(rows) == {"active": 12, "suppressed": 8, "paid": 0, "rejected": 1}
    assert rows[-1] == Rejected(5, "a b@c.com", "cleaned_members_export_3f1a.csv: not a valid email address")
    assert [row.line for row in rows if isinstance(row, Row) and row.status == "bounced"] == [2, 3, 4]


def test_a_zip_with_no_subscriber_list(tmp_path):
    path = zipped(tmp_path, {"posts.csv": (SAMPLES / "substack_export/posts.csv").read_bytes(), "a.html": b"<p>"})
    with open(path, "rb") as stream, pytest.raises(FormatError, match="This zip holds no subscriber list"):
        read(stream, name="export.zip")
    with pytest.raises(FormatError, match="cannot be opened"):
        read(io.BytesIO(b"PK\x03\x04 not really a zip"), name="x.zip")


def test_the_callers_stream_is_left_open():
    stream = io.BytesIO((SAMPLES / "kit.csv").read_bytes())
    assert len(list(read(stream))) == 12
    assert not stream.closed
    reader = read(stream := io.BytesIO((SAMPLES / "kit.csv").read_bytes()))
    del reader
    assert not stream.closed


class CountingStream(io.RawIOBase):
    """A file that says how much of it has been read."""

    def __init__(self, data):
        self.data, self.position = data, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        chunk = self.data[self.position:self.position + len(buffer)]
        buffer[:len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def test_rows_stream_from_the_file_rather_than_after_reading_it_all():
    data = b"email,active_subscription,email_disabled,created_at\n" + b"".join(
        b"fan%d@example.com,false,false,2024-01-01T00:00:00Z\n" % i for i in range(200_000))
    stream = CountingStream(data)
    reader = read(stream)
    first = next(reader)
    assert first.line == 2 and stream.position < 1_000_000 < len(data)
    assert sum(1 for _ in reader) == 199_999


def test_a_stray_quote_inside_a_cell_then_a_quoted_cell_over_two_lines():
    data = b'email,name,subscribed_to_emails\nx@y.com,5" tall,"on\ntwo lines"\nz@y.com,"a""b",true\n'
    rows = records(data)
    assert [(row.line, row.email, row.name) for row in rows] == [(2, "x@y.com", '5" tall'), (4, "z@y.com", 'a"b')]
    data = b'email,name,note,subscribed_to_emails\nx@y.com,a"b,"c\nd",false\nz@y.com,,,true\n'  # even, but open
    assert [(row.line, row.name, row.status) for row in records(data)] == [
        (2, 'a"b', "unsubscribed"), (4, "", "active")]


CELL = st.text(alphabet='ab ,"\n\r\té', max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(CELL, CELL, CELL), min_size=1, max_size=8), st.sampled_from(["\r\n", "\n"]))
def test_cells_and_line_numbers_are_those_csv_reader_gives(cells, terminator):
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=terminator)
    writer.writerow(OWN_HEADER)
    for i, (name, text, agent) in enumerate(cells):
        writer.writerow([f"fan{i}@example.com", name, "active", "free", "", "", "", "", "", text, "", "", agent])
    expected, reader = [], csv.reader(io.StringIO(out.getvalue(), newline=""))
    next(reader)
    start = reader.line_num
    for row in reader:
        expected.append((start + 1, row[1].strip(), row[9], row[12].strip()))
        start = reader.line_num
    got = [(row.line, row.name, row.consent_text, row.consent_user_agent) for row in records(out.getvalue().encode())]
    assert got == expected
