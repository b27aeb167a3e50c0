"""Quantities stated in text: money, percentages, dates, times, counts with units, numbers.

The faithfulness stage checks that every figure an answer states also appears in a context
passage, so each figure is extracted once, normalised to a comparable value, and compared by
meaning rather than by spelling: ``£12.50`` equals ``12.5 GBP``, ``1 March 2026`` equals
``2026-03-01``, ``3-5 days`` states both 3 days and 5 days.

>>> [(q.kind, q.value, q.unit, q.raw) for q in extract_quantities(
...     "The fee is £12.50. Transfers take 3-5 business days; APR 19.9% from 1 March 2026.")]
... # doctest: +NORMALIZE_WHITESPACE
[('money', 12.5, 'GBP', '£12.50'), ('quantity', 3.0, 'business day', '3'),
 ('quantity', 5.0, 'business day', '5 business days'), ('percent', 19.9, '%', '19.9%'),
 ('date', '2026-03-01', None, '1 March 2026')]
>>> fee = extract_quantities("It costs 12.5 GBP a month")[0]
>>> supported(fee, extract_quantities("Monthly fee: £12.50.")), supported(fee, [])
(True, False)

Kinds and their values:

=========  ==========================================  ====================================
kind       value                                       unit
=========  ==========================================  ====================================
money      amount as float (``50p`` is 0.5)            ISO currency (GBP, USD, EUR) or None
percent    float (``0.5 percent`` is 0.5)              ``"%"``
date       ISO text: ``2026-03-01``, ``--03-01`` (no   None
           year), ``2026-03`` (no day)
time       ``"HH:MM"`` (24-hour)                       None
quantity   float                                       singular unit (``business day``, ``card``)
code       the digits (phone numbers, sort codes,      None
           account numbers: identifiers, not amounts)
number     float (plain numbers and ordinals)          None
=========  ==========================================  ====================================

Numeric dates are read day first (``1/3/2026`` is 1 March), as UK banking text writes them,
unless only the month-first reading is valid (``3/13/2026``).
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

KINDS = ("money", "percent", "date", "time", "quantity", "code", "number")


@dataclass(frozen=True)
class Quantity:
    """One figure found in a text, with its value normalised for comparison."""

    kind: str
    value: float | str
    unit: str | None
    raw: str
    span: tuple[int, int]


# A decimal number with optional thousands separators. Trailing sentence punctuation is never
# part of it ("£12.50." ends at the 0) because a decimal point must be followed by a digit.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d|\.\d|,\d{3}(?!\d))"
_LEFT = r"(?<![\w.])"
_MONTHS = {name: i for i, names in enumerate(
    [(), ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
     ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
     ("oct", "october"), ("nov", "november"), ("dec", "december")]) for name in names}
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b")
_ORD = r"(?:st|nd|rd|th)"

_CURRENCY = {"£": "GBP", "€": "EUR", "$": "USD", "us$": "USD", "gbp": "GBP", "usd": "USD",
             "eur": "EUR", "pound": "GBP", "pounds": "GBP", "quid": "GBP", "euro": "EUR",
             "euros": "EUR", "dollar": "USD", "dollars": "USD", "p": "GBP", "pence": "GBP",
             "cent": None, "cents": None}
_SUBUNIT = {"p", "pence", "cent", "cents"}
_MULT = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "bn": 1e9, "billion": 1e9}
_MULT_RE = r"(?:\s?(?:k|m|bn)\b|\s(?:thousand|million|billion)\b)"

# Units a count can carry: durations, and the things a bank's answers count. A number followed
# by any other word stays a plain number, which still matches the same value of any kind, so an
# unlisted unit makes the check more lenient, never wrongly strict.
_UNITS = {
    "second": ("seconds", "sec", "secs"), "minute": ("minutes", "min", "mins"),
    "hour": ("hours", "hr", "hrs", "h"), "day": ("days",), "week": ("weeks", "wks"),
    "fortnight": ("fortnights",), "month": ("months",), "year": ("years", "yrs"),
    "transfer": ("transfers",), "payment": ("payments",), "transaction": ("transactions",),
    "withdrawal": ("withdrawals",), "card": ("cards",), "account": ("accounts",),
    "attempt": ("attempts",), "try": ("tries",), "digit": ("digits",),
    "character": ("characters",), "device": ("devices",), "cheque": ("cheques",),
    "deposit": ("deposits",), "statement": ("statements",), "payee": ("payees",),
    "pot": ("pots",), "person": ("people", "persons"), "user": ("users",),
    "branch": ("branches",), "atm": ("atms",), "time": ("times",), "login": ("logins",),
    "code": ("codes",), "customer": ("customers",), "point": ("points",),
}
_UNIT_OF = {form: unit for unit, forms in _UNITS.items() for form in (unit, *forms)}
_UNIT_RE = "(?:" + "|".join(sorted(map(re.escape, _UNIT_OF), key=len, reverse=True)) + r")\b"
# Words that may sit between a number and its unit ("3 free international transfers").
_MODIFIERS = ("business", "working", "banking", "calendar", "full", "consecutive", "free",
              "additional", "extra", "more", "further", "separate", "international", "domestic",
              "contactless", "virtual", "physical", "outgoing", "incoming", "failed", "incorrect",
              "wrong", "online", "new", "cash", "atm", "fee-free", "standard", "instant", "same")
_MOD_RE = "(?:" + "|".join(map(re.escape, _MODIFIERS)) + ")"
_DAY_QUALIFIER = {"business": "business", "working": "business", "banking": "business"}

_WORD_NUMBERS = {w: float(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_WORD_NUMBERS |= {w: float(10 * i) for i, w in enumerate(
    "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"}
_WORD_NUMBERS["hundred"] = 100.0
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_WORD_RE = (rf"\b(?:(?:{_TENS})[- ](?:one|two|three|four|five|six|seven|eight|nine)|"
            + "|".join(sorted(_WORD_NUMBERS, key=len, reverse=True)) + r")\b")


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _word_number(text: str) -> float:
    parts = re.split(r"[- ]", text.lower())
    return sum(_WORD_NUMBERS[p] for p in parts)


def _date_iso(year: int | None, month: int, day: int | None) -> str | None:
    """ISO text for a (possibly partial) date, or None when no such day exists."""
    if not 1 <= month <= 12:
        return None
    if day is not None:
        # 29 February is valid when the year is unknown: a leap year may be meant.
        last = calendar.monthrange(year if year is not None else 2024, month)[1]
        if not 1 <= day <= last:
            return None
    if year is None:
        return f"--{month:02d}-{day:02d}"
    if day is None:
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def _year(text: str | None) -> int | None:
    if text is None:
        return None
    return int(text) + 2000 if len(text) == 2 else int(text)


# Each handler gets the match and returns the quantities it stands for (possibly none: a list
# marker is claimed so that its digit is not read as a number), or None to leave it unclaimed.
_Handler = Callable[[re.Match[str]], list[Quantity] | None]


def _q(m: re.Match[str], kind: str, value: float | str, unit: str | None) -> list[Quantity]:
    return [Quantity(kind, value, unit, m.group(0), m.span())]


def _skip(m: re.Match[str]) -> list[Quantity]:
    return []


def _iso_date(m: re.Match[str]) -> list[Quantity] | None:
    iso = _date_iso(int(m["y"]), int(m["m"]), int(m["d"]))
    return None if iso is None else _q(m, "date", iso, None)


def _slash_date(m: re.Match[str]) -> list[Quantity] | None:
    a, b, year = int(m["a"]), int(m["b"]), _year(m["y"])
    iso = _date_iso(year, b, a) or _date_iso(year, a, b)
    return None if iso is None else _q(m, "date", iso, None)


def _text_date(m: re.Match[str]) -> list[Quantity] | None:
    if m["mon"].isupper() and len(m["mon"]) == 3:
        return None  # APR, MAR in capitals are acronyms in banking text ("APR 19.9%")
    if m["mon"] == "may":
        return None  # the verb: "up to 3 may apply"
    month = _MONTHS[m["mon"].lower()]
    day = int(m["d"]) if m.groupdict().get("d") else None
    iso = _date_iso(_year(m["y"]), month, day)
    return None if iso is None else _q(m, "date", iso, None)


def _clock(m: re.Match[str]) -> list[Quantity] | None:
    hour, minute = int(m["h"]), int(m["min"] or 0)
    half = (m.groupdict().get("ampm") or "").replace(".", "").lower()
    if half:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "pm" else 0)
    return _q(m, "time", f"{hour:02d}:{minute:02d}", None)


def _code(m: re.Match[str]) -> list[Quantity]:
    return _q(m, "code", re.sub(r"\D", "", m.group(0)), None)


def _money(m: re.Match[str]) -> list[Quantity]:
    cur = re.sub(r"\s", "", m["cur"]).lower()
    value = _number(m["num"]) * _MULT.get((m["mult"] or "").strip().lower(), 1.0)
    if cur in _SUBUNIT:
        value /= 100
    return _q(m, "money", round(value, 6), _CURRENCY[cur])


def _percent(m: re.Match[str]) -> list[Quantity]:
    return _q(m, "percent", _number(m["num"]), "%")


def _ordinal(m: re.Match[str]) -> list[Quantity]:
    return _q(m, "number", _number(m["num"]), None)


def _unit(m: re.Match[str]) -> str:
    unit = _UNIT_OF[m["unit"].lower()]
    if unit == "day":
        for word in re.findall(r"[a-z]+", (m["mods"] or "").lower()):
            if word in _DAY_QUALIFIER:
                return f"{_DAY_QUALIFIER[word]} day"
    return unit


def _count(m: re.Match[str]) -> list[Quantity]:
    return _q(m, "quantity", _number(m["num"]), _unit(m))


def _word_count(m: re.Match[str]) -> list[Quantity]:
    return _q(m, "quantity", _word_number(m["num"]), _unit(m))


def _plain(m: re.Match[str]) -> list[Quantity]:
    raw = m.group(0)
    # A digit string with a leading zero, or too long for an amount someone would write without
    # separators, is an identifier (phone, account number): compared as digits, not as a value.
    if "." not in raw and "," not in raw and ((raw[0] == "0" and len(raw) >= 3) or len(raw) >= 7):
        return _q(m, "code", raw, None)
    return _q(m, "number", _number(raw), None)


def _word_plain(m: re.Match[str]) -> list[Quantity]:
    return _q(m, "number", _word_number(m.group(0)), None)


_I = re.IGNORECASE
_PASSES: tuple[tuple[re.Pattern[str], _Handler], ...] = (
    # Enumerators of a numbered list ("1. Open the app") are layout, not figures.
    (re.compile(r"(?m)^[ \t]*\(?\d{1,2}[.)](?=[ \t])"), _skip),
    (re.compile(r"(?<!\w)24/7(?!\w)"), _skip),
    (re.compile(r"(?<![\w-])(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})"
                r"(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w-])"),
     _iso_date),
    (re.compile(r"(?<![\w/.])(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4}|\d{2})(?![\w/])"),
     _slash_date),
    (re.compile(rf"(?<![\w.])(?P<d>\d{{1,2}}){_ORD}?(?:\s+of)?\s+(?P<mon>{_MONTH})\.?"
                rf"(?:,?\s+(?P<y>\d{{4}})(?!\d))?", _I), _text_date),
    (re.compile(rf"\b(?P<mon>{_MONTH})\.?\s+(?:the\s+)?(?P<d>\d{{1,2}}){_ORD}?(?![\w%]|[.,]\d)"
                rf"(?:,?\s+(?P<y>\d{{4}})(?!\d))?", _I), _text_date),
    (re.compile(rf"\b(?P<mon>{_MONTH})\.?,?\s+(?P<y>\d{{4}})(?![\d\w])", _I), _text_date),
    (re.compile(r"(?<![\w:.])(?P<h>\d{1,2})(?::(?P<min>[0-5]\d))?\s?"
                r"(?P<ampm>a\.m\.|p\.m\.|am|pm)(?![a-z])", _I), _clock),
    (re.compile(r"(?<![\w:.])(?P<h>[01]?\d|2[0-3]):(?P<min>[0-5]\d)(?![\d:])"), _clock),
    # Phone numbers (+44 20 7946 0000, 0800 123 4567), sort codes, card numbers.
    (re.compile(r"(?<![\w.,+])(?:\+\d{1,3}[ -]?|0)\d{2,4}(?:[ -]?\d{3,4}){1,2}(?!\w)"), _code),
    (re.compile(r"(?<![\w-])\d{2}-\d{2}-\d{2}(?![\w-])"), _code),
    (re.compile(r"(?<![\w])\d{4}(?: \d{4}){3}(?!\w)"), _code),
    (re.compile(rf"(?P<cur>US\$|£|€|\$|(?:GBP|USD|EUR)(?![a-z])\s?)\s?(?P<num>{_NUM})"
                rf"(?P<mult>{_MULT_RE})?", _I), _money),
    (re.compile(rf"{_LEFT}(?P<num>{_NUM})(?P<mult>{_MULT_RE})?"
                r"(?P<cur>\s?(?:GBP|USD|EUR|pounds?|pence|euros?|dollars?|cents?|quid)|p)\b",
                _I), _money),
    (re.compile(rf"{_LEFT}(?P<num>{_NUM})\s?(?:%|per\s?cent\b|percentage points?\b|pct\b)", _I),
     _percent),
    (re.compile(rf"{_LEFT}(?P<num>\d+){_ORD}\b", _I), _ordinal),
    (re.compile(rf"{_LEFT}(?P<num>{_NUM})[\s-]?(?P<mods>(?:{_MOD_RE}[\s-]){{0,2}})"
                rf"(?P<unit>{_UNIT_RE})", _I), _count),
    (re.compile(rf"{_LEFT}{_NUM}(?![A-Za-z])"), _plain),
)
_WORD_PASSES: tuple[tuple[re.Pattern[str], _Handler], ...] = (
    (re.compile(rf"(?P<num>{_WORD_RE})[\s-](?P<mods>(?:{_MOD_RE}[\s-]){{0,2}})"
                rf"(?P<unit>{_UNIT_RE})", _I), _word_count),
    (re.compile(_WORD_RE, _I), _word_plain),
)
_RANGE_GAP = re.compile(r"\s*(?:-|–|—|to|and|or|up to)\s*", _I)


def _ranges(found: list[Quantity], text: str) -> list[Quantity]:
    """Carry a unit across a range: "3-5 days" is 3 days and 5 days, "£10-20" is £10 and £20."""
    out = list(found)
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        if not _RANGE_GAP.fullmatch(text[a.span[1]:b.span[0]]):
            continue
        if a.kind == "number" and b.kind in ("quantity", "percent", "money"):
            out[i] = replace(a, kind=b.kind, unit=b.unit)
        elif a.kind == "money" and b.kind == "number":
            out[i + 1] = replace(b, kind="money", unit=a.unit)
    return out


def extract_quantities(text: str, *, number_words: bool = False) -> list[Quantity]:
    """Every figure in ``text``, in order of appearance.

    ``number_words`` also reads spelled-out numbers ("three business days"). The faithfulness
    stage turns it on for context passages only: there it can only add support, while in an
    answer "one" is as often a pronoun as a figure.

    >>> [(q.kind, q.value) for q in extract_quantities("Call 0800 123 4567 by 5:30pm on March 3rd")]
    [('code', '08001234567'), ('time', '17:30'), ('date', '--03-03')]
    >>> extract_quantities("no figures here")
    []
    >>> extract_quantities("three days", number_words=True)[0].value
    3.0
    """
    claimed = bytearray(len(text))
    found: list[Quantity] = []
    passes: Iterable[tuple[re.Pattern[str], _Handler]] = _PASSES
    if number_words:
        passes = (*_PASSES, *_WORD_PASSES)
    for pattern, handler in passes:
        for m in pattern.finditer(text):
            start, end = m.span()
            if any(claimed[start:end]):
                continue
            quantities = handler(m)
            if quantities is None:
                continue
            claimed[start:end] = b"\x01" * (end - start)
            found.extend(quantities)
    found.sort(key=lambda q: q.span)
    return _ranges(found, text)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _date_parts(iso: str) -> tuple[int | None, int | None, int | None]:
    if iso.startswith("--"):
        month, day = iso[2:].split("-")
        return None, int(month), int(day)
    parts = [int(p) for p in iso.split("-")]
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def _facets(q: Quantity) -> tuple[float, ...]:
    """The values a plain number stating the same fact could have."""
    if q.kind in ("money", "percent", "quantity", "number"):
        return (float(q.value),)
    if q.kind == "date":
        return tuple(float(p) for p in _date_parts(str(q.value)) if p is not None)
    if q.kind == "time":
        return (float(str(q.value)[:2]),)
    return ()


def _unit_head(unit: str | None) -> str | None:
    return unit.split()[-1] if unit else unit


def _same(a: Quantity, b: Quantity) -> bool:
    if a.kind == "number" or b.kind == "number":
        if a.kind == "code" or b.kind == "code":
            return False
        plain, other = (a, b) if a.kind == "number" else (b, a)
        return any(_close(float(plain.value), v) for v in _facets(other))
    if a.kind != b.kind:
        return False
    if a.kind == "money":
        return _close(float(a.value), float(b.value)) and (
            a.unit is None or b.unit is None or a.unit == b.unit)
    if a.kind == "percent":
        return _close(float(a.value), float(b.value))
    if a.kind == "quantity":
        # "3 days" and "3 business days" are compared by the head unit: a missing qualifier is
        # left to the sentence-level check rather than costing the sharp numeric penalty.
        return _close(float(a.value), float(b.value)) and _unit_head(a.unit) == _unit_head(b.unit)
    if a.kind == "date":
        pa, pb = _date_parts(str(a.value)), _date_parts(str(b.value))
        return all(x is None or y is None or x == y for x, y in zip(pa, pb, strict=True))
    return a.value == b.value


def supported(q: Quantity, candidates: Iterable[Quantity]) -> bool:
    """Whether any candidate states the same figure as ``q``.

    Money without a currency matches any currency of the same amount; a plain number matches
    the same value of any kind; dates match when every part both state agrees.

    >>> def one(text): return extract_quantities(text)[0]
    >>> supported(one("£12.50"), [one("12.5 GBP")]), supported(one("£12.50"), [one("$12.50")])
    (True, False)
    >>> supported(one("March 1st"), [one("1/3/2026")]), supported(one("5 days"), [one("5 cards")])
    (True, False)
    """
    return any(_same(q, c) for c in candidates)
