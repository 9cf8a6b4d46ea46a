from subscribers.tokens import make_token, read_token


def test_a_token_reads_back_for_its_own_purpose_only():
    token = make_token("unsubscribe", 12345)
    assert read_token("unsubscribe", token) == 12345
    assert read_token("preferences", token) is None
    assert read_token("confirm", token) is None


def test_an_altered_token_is_refused():
    token = make_token("unsubscribe", 12345)
    value, signature = token.split(":")
    assert read_token("unsubscribe", f"{value}x:{signature}") is None
    assert read_token("unsubscribe", f"{value}:{signature[:-1]}A") is None
    assert read_token("unsubscribe", "") is None
    assert read_token("unsubscribe", "not a token at all") is None


def test_tokens_are_short_enough_for_a_header():
    assert len(make_token("unsubscribe", 10**9)) < 64
