"""Quantities in banking text: extraction, normalisation and matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.quantities import KINDS, Quantity, extract_quantities, supported


def facts(text: str, **kw) -> list[tuple]:
    return [(q.kind, q.value, q.unit) for q in extract_quantities(text, **kw)]


GBP, USD, EUR = "GBP", "USD", "EUR"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # money, in every spelling a bank's answers use
        ("The Premium account costs £12.50.", [("money", 12.5, GBP)]),
        ("A fee of $3 applies.", [("money", 3.0, USD)]),
        ("You will be charged 3.00 GBP per transfer.", [("money", 3.0, GBP)]),
        ("The card replacement fee is 12 euros", [("money", 12.0, EUR)]),
        ("Pay EUR 5 to send money abroad.", [("money", 5.0, EUR)]),
        ("Withdrawals abroad cost €2.50 each.", [("money", 2.5, EUR)]),
        ("Your limit is £1,000 a day.", [("money", 1000.0, GBP)]),
        ("Balances over £85,000.00 are not protected.", [("money", 85000.0, GBP)]),
        ("We cover up to £2k, or £1.5 million for business.",
         [("money", 2000.0, GBP), ("money", 1_500_000.0, GBP)]),
        ("Each text alert costs 50p.", [("money", 0.5, GBP)]),
        ("It costs 5 pounds to order a new card.", [("money", 5.0, GBP)]),
        ("Fees range from £10-£20.", [("money", 10.0, GBP), ("money", 20.0, GBP)]),
        ("Fees range from £10 to 20.", [("money", 10.0, GBP), ("money", 20.0, GBP)]),
        ("There's no fee (£0) for UK transfers", [("money", 0.0, GBP)]),
        ("The fee is £12.50/month", [("money", 12.5, GBP)]),
        # percentages
        ("We charge a 2% fee on foreign purchases.", [("percent", 2.0, "%")]),
        ("Savings earn 0.5 percent interest.", [("percent", 0.5, "%")]),
        ("Representative 19.9% APR (variable).", [("percent", 19.9, "%")]),
        ("APR 22.9% applies to cash.", [("percent", 22.9, "%")]),
        ("Rates rise by 2-3%.", [("percent", 2.0, "%"), ("percent", 3.0, "%")]),
        ("That is 4.5 per cent AER.", [("percent", 4.5, "%")]),
        # dates
        ("The new tariff starts on 2026-03-01.", [("date", "2026-03-01", None)]),
        ("The new tariff starts on 1 March 2026.", [("date", "2026-03-01", None)]),
        ("It changes on March 1st.", [("date", "--03-01", None)]),
        ("Your statement dated 1/3/2026 shows it.", [("date", "2026-03-01", None)]),
        ("Dated 3/13/2026 in US format.", [("date", "2026-03-13", None)]),
        ("Effective from the 5th of May 2026", [("date", "2026-05-05", None)]),
        ("Applies from Mar 5, 2026.", [("date", "2026-03-05", None)]),
        ("Prices change in April 2026.", [("date", "2026-04", None)]),
        ("Updated 2026-03-01T09:00:00Z", [("date", "2026-03-01", None)]),
        ("Up to 3 may apply.", [("number", 3.0, None)]),
        # times
        ("Lines are open 8am-8pm.", [("time", "08:00", None), ("time", "20:00", None)]),
        ("Payments sent before 5:30pm arrive today.", [("time", "17:30", None)]),
        ("Cut-off is 14:00 on weekdays", [("time", "14:00", None)]),
        # durations and counts
        ("Transfers take 3 business days.", [("quantity", 3.0, "business day")]),
        ("Transfers take 3 working days.", [("quantity", 3.0, "business day")]),
        ("Your card arrives in 5 days.", [("quantity", 5.0, "day")]),
        ("Funds are held for 24 hours.", [("quantity", 24.0, "hour")]),
        ("We place a 24-hour hold.", [("quantity", 24.0, "hour")]),
        ("You get 10 free transfers a month.", [("quantity", 10.0, "transfer")]),
        ("You can hold 2 cards.", [("quantity", 2.0, "card")]),
        ("Delivery takes 3-5 business days.",
         [("quantity", 3.0, "business day"), ("quantity", 5.0, "business day")]),
        ("Between 3 and 5 working days.",
         [("quantity", 3.0, "business day"), ("quantity", 5.0, "business day")]),
        ("After 3 incorrect attempts your PIN locks.", [("quantity", 3.0, "attempt")]),
        ("Your passcode has 6 digits.", [("quantity", 6.0, "digit")]),
        # identifiers, ordinals, plain numbers
        ("Call us on 0800 123 4567.", [("code", "08001234567", None)]),
        ("Call +44 20 7946 0000 from abroad.", [("code", "442079460000", None)]),
        ("Our sort code is 20-00-00.", [("code", "200000", None)]),
        ("Account 12345678 is closed.", [("code", "12345678", None)]),
        ("Your 2nd card is free.", [("number", 2.0, None)]),
        ("The card ending 1234.", [("number", 1234.0, None)]),
        ("Choose option 3.", [("number", 3.0, None)]),
        ("1,000,000.50 in total", [("number", 1_000_000.5, None)]),
        ("Items 1,2,3", [("number", 1.0, None), ("number", 2.0, None), ("number", 3.0, None)]),
        # not quantities
        ("1. Open the app\n2. Tap Cards\n3. Freeze card", []),
        ("Support is available 24/7.", []),
        ("Use the v4 pricing table and 2FA.", []),
        ("Transfers take three business days.", []),
        ("", []),
    ],
)
def test_extracts(text, expected):
    assert facts(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Transfers take three business days.", [("quantity", 3.0, "business day")]),
        ("You can have twenty-four cards", [("quantity", 24.0, "card")]),
        ("Call us once or twice", []),
        ("one of our advisers", [("number", 1.0, None)]),
    ],
)
def test_number_words_on_request(text, expected):
    assert facts(text, number_words=True) == expected


def test_raw_and_span():
    text = "It's £12.50. Then 3-5 days."
    qs = extract_quantities(text)
    assert [q.raw for q in qs] == ["£12.50", "3", "5 days"]
    assert all(text[q.span[0]:q.span[1]] == q.raw for q in qs)


def one(text: str) -> Quantity:
    (q,) = extract_quantities(text)
    return q


@pytest.mark.parametrize(
    ("claim", "context", "expected"),
    [
        ("£12.50", "12.5 GBP", True),
        ("£12.50", "£12.5", True),
        ("£12.50", "$12.50", False),
        ("£12.50", "£15.00", False),
        ("£12.50", "12.50", True),  # a pricing table without the symbol
        ("12.50", "£12.50", True),
        ("£12.50", "12.50 cents", False),
        ("50p", "£0.50", True),
        ("2%", "2 percent", True),
        ("2%", "3%", False),
        ("1 March 2026", "2026-03-01", True),
        ("March 1st", "1/3/2026", True),
        ("1 March 2026", "1 March 2027", False),
        ("April 2026", "3 April 2026", True),
        ("3 business days", "3 working days", True),
        ("3 days", "3 business days", True),
        ("5 days", "5 cards", False),
        ("5 days", "5", True),
        ("0800 123 4567", "08001234567", True),
        ("0800 123 4567", "0800 123 4568", False),
        ("9am", "09:00", True),
        ("2026", "1 March 2026", True),
    ],
)
def test_supported(claim, context, expected):
    assert supported(one(claim), [one(context)]) is expected


def test_supported_needs_a_candidate():
    assert not supported(one("£5"), [])


def test_supported_money_without_currency_matches_any():
    bare = Quantity("money", 12.5, None, "12.50", (0, 5))
    assert supported(bare, [one("€12.50")]) and supported(one("$12.50"), [bare])


cents = st.integers(min_value=0, max_value=10**9)


def _plain(c: int) -> str:
    return f"{c / 100:.2f}".rstrip("0").rstrip(".")


_FORMATS = [
    lambda c: f"£{c / 100:.2f}",
    lambda c: f"£{c / 100:,.2f}",
    lambda c: f"£{_plain(c)}",
    lambda c: f"{c / 100:.2f} GBP",
    lambda c: f"GBP {c / 100:,.2f}",
    lambda c: f"GBP{_plain(c)}",
    lambda c: f"{c / 100:,.2f} pounds",
]


@given(cents, st.sampled_from(range(len(_FORMATS))), st.sampled_from(["", ".", ",", "!", ")"]))
def test_money_round_trips_in_every_format(c, fmt, tail):
    text = f"The fee is {_FORMATS[fmt](c)}{tail} per month"
    (q,) = extract_quantities(text)
    assert (q.kind, q.unit) == ("money", "GBP")
    assert q.value == pytest.approx(c / 100, abs=1e-9)
    assert supported(q, extract_quantities(f"Fee: £{c / 100:.2f}"))


@given(st.integers(min_value=1, max_value=99))
def test_pence_equal_pounds(c):
    assert supported(one(f"{c}p"), [one(f"£0.{c:02d}")])


@given(st.text().filter(lambda s: not any(ch.isdigit() for ch in s)))
def test_no_digits_no_quantities(text):
    assert extract_quantities(text) == []


_NUMERIC_ALPHABET = st.sampled_from(list("0123456789.,-/:£$%pm ap thdaysMarch\n"))


@given(st.text(alphabet=_NUMERIC_ALPHABET, max_size=40))
def test_spans_are_the_raw_text(text):
    for q in extract_quantities(text, number_words=True):
        assert q.kind in KINDS
        assert text[q.span[0]:q.span[1]] == q.raw
