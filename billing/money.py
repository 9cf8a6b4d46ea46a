"""Amounts as Stripe counts them (the currency's smallest unit) and as people read them."""

from decimal import Decimal

# Stripe's zero-decimal currencies: the amount is in whole units (50000 VND is 50.000 ₫).
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf",
                "xof", "xpf"}
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "vnd": "₫", "jpy": "¥", "aud": "A$", "cad": "C$"}


def to_units(amount, currency):
    """The smallest-unit integer as a Decimal of whole units."""
    return Decimal(amount) if currency.lower() in ZERO_DECIMAL else Decimal(amount) / 100


def from_units(value, currency):
    """Whole units (as typed: "5", "4.99") to Stripe's smallest-unit integer."""
    value = Decimal(str(value))
    return int(value if currency.lower() in ZERO_DECIMAL else (value * 100).quantize(Decimal(1)))


def format_amount(amount, currency):
    units = to_units(amount, currency)
    code = currency.lower()
    text = f"{units:,.0f}" if code in ZERO_DECIMAL else f"{units:,.2f}"
    if code == "vnd":
        return f"{text.replace(',', '.')} ₫"
    symbol = SYMBOLS.get(code)
    return f"{symbol}{text}" if symbol else f"{text} {code.upper()}"
