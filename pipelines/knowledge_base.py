"""The invented help-centre knowledge base behind the demo scenario.

Every passage states concrete facts (prices in £, percentages, limits, day counts) so an answer
quoting it is checkable against its context. One passage per BANKING77 intent; the fee, charge and
exchange-rate intents read the ``pricing-table`` document, which exists in two versions (v3, then
v4 with different prices) so the scenario can serve a stale version. All facts are made up.

>>> passage_for("cash_withdrawal_charge", "v4").doc_id
'pricing-table'
>>> numbers_in("£1,000 a month, then 2.5% (min £1)")
('1000', '2.5', '1')

Intents of other data sets (CLINC150, HWU64, your own) get a generated passage of their own
document ``kb-<intent>``: one of a few help-centre templates filled with concrete figures
(a price, a percentage, minutes, days, counts), chosen from the intent's name by a stable hash,
so the same intent always reads the same passage. :func:`generic_passage` with ``revision=1``
gives the next version of such a passage (every figure changed): a stale-document incident keeps
serving the old one.

>>> p = passage_for("alarm_set")
>>> p.doc_id, p == passage_for("alarm_set"), len(numbers_in(p.text)) >= 3
('kb-alarm-set', True, True)
>>> new = generic_passage("alarm_set", revision=1)
>>> new.version != p.version and set(numbers_in(new.text)).isdisjoint(numbers_in(p.text))
True
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal

PRICING_DOC = "pricing-table"
FEES_FAQ_DOC = "fees-faq"
FALLBACK_DOC = "help-centre"

# Prices and percentages first, so a hallucinated figure replaces a fee rather than a date.
_NUMBER = re.compile(r"£?\d+(?:,\d{3})*(?:\.\d+)?%?")


@dataclass(frozen=True)
class Document:
    """A source document: its live version and when it changed upstream and was indexed."""

    doc_id: str
    version: str
    updated_days_before_start: float
    index_lag_hours: float


@dataclass(frozen=True)
class Passage:
    doc_id: str
    version: str
    text: str


DOCUMENTS: dict[str, Document] = {
    d.doc_id: d
    for d in (
        Document("cards-delivery", "v7", 63.0, 3.0),
        Document("cards-troubleshooting", "v4", 35.5, 1.5),
        Document("virtual-cards", "v2", 88.0, 6.0),
        Document("security", "v9", 21.0, 0.5),
        Document("top-ups", "v5", 47.0, 2.0),
        Document("transfers", "v6", 29.0, 4.0),
        Document("payments-disputes", "v3", 54.0, 2.5),
        Document("cash", "v2", 71.0, 5.0),
        Document("identity", "v5", 39.0, 1.0),
        Document("account", "v8", 96.0, 8.0),
        Document(FEES_FAQ_DOC, "v2", 120.0, 12.0),
        Document(FALLBACK_DOC, "v1", 200.0, 24.0),
        # v3 of the pricing table went live 12 days before the stream starts and was indexed
        # three hours later; the scenario's incident replaces it with v4 upstream.
        Document(PRICING_DOC, "v3", 12.0, 3.0),
    )
}

# The fee, charge and exchange-rate intents of BANKING77: their answers quote the pricing table.
PRICING_INTENTS: tuple[str, ...] = (
    "transfer_fee_charged",
    "card_payment_fee_charged",
    "exchange_rate",
    "exchange_charge",
    "top_up_by_card_charge",
    "top_up_by_bank_transfer_charge",
    "cash_withdrawal_charge",
)

PRICING_TABLE: dict[str, dict[str, str]] = {
    "transfer_fee_charged": {
        "v3": "Transfers to UK accounts are free. International transfers cost £0.50 each "
        "plus 0.45% of the amount sent.",
        "v4": "Transfers to UK accounts are free. International transfers cost £0.70 each "
        "plus 0.55% of the amount sent.",
    },
    "card_payment_fee_charged": {
        "v3": "Card payments in pounds are free. Payments in other currencies are free up to "
        "£1,000 a month; above that a 2.5% fee applies.",
        "v4": "Card payments in pounds are free. Payments in other currencies are free up to "
        "£500 a month; above that a 3% fee applies.",
    },
    "exchange_rate": {
        "v3": "We convert at the interbank rate plus a 0.4% markup on weekdays and a 0.9% "
        "markup at weekends, when markets are closed.",
        "v4": "We convert at the interbank rate plus a 0.6% markup on weekdays and a 1.2% "
        "markup at weekends, when markets are closed.",
    },
    "exchange_charge": {
        "v3": "Exchanging money between your currency balances is free up to £5,000 a month; "
        "above that we charge 0.5% of the amount exchanged.",
        "v4": "Exchanging money between your currency balances is free up to £2,000 a month; "
        "above that we charge 0.8% of the amount exchanged.",
    },
    "top_up_by_card_charge": {
        "v3": "Top-ups with a UK debit card are free. Top-ups with a credit card or a card "
        "issued abroad cost 1.2% of the amount, with a minimum of £0.30.",
        "v4": "Top-ups with a UK debit card are free. Top-ups with a credit card or a card "
        "issued abroad cost 1.7% of the amount, with a minimum of £0.45.",
    },
    "top_up_by_bank_transfer_charge": {
        "v3": "Topping up by bank transfer is free for transfers up to £10,000; a transfer "
        "above that costs a flat £2.",
        "v4": "Topping up by bank transfer is free for transfers up to £7,500; a transfer "
        "above that costs a flat £3.50.",
    },
    "cash_withdrawal_charge": {
        "v3": "ATM withdrawals are free up to £200 a month. After that each withdrawal costs "
        "2% of the amount.",
        "v4": "ATM withdrawals are free up to £150 a month. After that each withdrawal costs "
        "2.75% of the amount, with a minimum of £1.",
    },
}

FEES_FAQ = (
    "Every fee we charge is listed in the app under Account, Plans and fees. If you think a fee "
    "was charged in error, raise it in chat and we review it within 5 working days."
)

# One help-centre passage per non-pricing BANKING77 intent.
_PASSAGES: dict[str, tuple[str, str]] = {
    # cards-delivery
    "card_arrival": ("cards-delivery", "Cards arrive within 5 working days of ordering in the "
                     "UK and within 12 working days abroad. If yours has not arrived after 14 "
                     "days, we cancel it and send a new one free of charge."),
    "card_delivery_estimate": ("cards-delivery", "Standard delivery takes 3 to 5 working days; "
                               "express delivery takes 1 working day and costs £4.99."),
    "get_physical_card": ("cards-delivery", "You can order one physical card in the app under "
                          "Cards; the first card is free and replacements cost £5."),
    "order_physical_card": ("cards-delivery", "Order a physical card in the app under Cards, "
                            "Order. It ships within 2 working days and arrives within 5."),
    "getting_spare_card": ("cards-delivery", "You can hold up to 3 physical cards on one "
                           "account; each extra card costs £5 and shares your balance."),
    "card_about_to_expire": ("cards-delivery", "We send a new card automatically 30 days "
                             "before your card expires, free of charge."),
    "activate_my_card": ("cards-delivery", "Activate a new card in the app by entering the "
                         "6-digit code printed on the letter; it works within 10 minutes."),
    "card_linking": ("cards-delivery", "To link a card you already hold, scan it in the app; "
                     "linking takes up to 15 minutes and you can link 4 cards at most."),
    # cards-troubleshooting
    "card_not_working": ("cards-troubleshooting", "If your card stops working, check it is not "
                         "frozen in the app; 3 wrong PIN attempts block it for 24 hours."),
    "contactless_not_working": ("cards-troubleshooting", "Contactless payments are limited to "
                                "£100 each; after 5 contactless payments in a row the terminal "
                                "asks for your PIN once."),
    "virtual_card_not_working": ("cards-troubleshooting", "Virtual cards work online only and "
                                 "need the 3-digit security code; a declined virtual card "
                                 "resets after 30 minutes."),
    "card_swallowed": ("cards-troubleshooting", "If an ATM keeps your card, freeze it in the "
                       "app; a replacement costs nothing and arrives within 5 working days."),
    "card_acceptance": ("cards-troubleshooting", "Our cards run on Visa and are accepted in "
                        "more than 200 countries and territories, wherever Visa is shown."),
    "declined_card_payment": ("cards-troubleshooting", "A card payment is declined when it "
                              "exceeds your balance or your £3,000 daily spending limit."),
    "pin_blocked": ("cards-troubleshooting", "Your PIN is blocked after 3 wrong attempts; "
                    "unblock it at any ATM with the right PIN or wait 24 hours."),
    "change_pin": ("cards-troubleshooting", "Change your PIN at any ATM in the UK; a new PIN "
                   "must have 4 digits and cannot be 1234."),
    "visa_or_mastercard": ("cards-troubleshooting", "All our cards are Visa debit cards; we "
                           "stopped issuing Mastercard in 2023."),
    "apple_pay_or_google_pay": ("cards-troubleshooting", "Apple Pay and Google Pay work with "
                                "every card; you can add a card to 5 devices at most."),
    # virtual-cards
    "getting_virtual_card": ("virtual-cards", "You can create up to 5 virtual cards in the "
                             "app for free; each is ready in about 1 minute."),
    "get_disposable_virtual_card": ("virtual-cards", "A disposable virtual card works for 1 "
                                    "payment and is replaced by a new number straight after; "
                                    "you can create 20 a day."),
    "disposable_card_limits": ("virtual-cards", "Disposable cards allow 1 payment each, up to "
                               "£1,500 per payment, and 20 new cards a day."),
    # security
    "lost_or_stolen_card": ("security", "If your card is lost or stolen, freeze it in the app "
                            "at once; a replacement is free and arrives within 5 working days."),
    "lost_or_stolen_phone": ("security", "If your phone is lost, log in on the web and sign "
                             "out all devices; we block app access within 10 minutes of a call."),
    "compromised_card": ("security", "If you think your card is compromised, freeze it and "
                         "order a new one; we refund fraudulent payments within 10 working days."),
    "card_payment_not_recognised": ("security", "If you do not recognise a card payment, "
                                    "dispute it in the app within 120 days of the payment."),
    "direct_debit_payment_not_recognised": ("security", "You can claim back a direct debit you "
                                            "did not authorise under the Direct Debit "
                                            "Guarantee; refunds arrive within 3 working days."),
    "cash_withdrawal_not_recognised": ("security", "Report a cash withdrawal you do not "
                                       "recognise within 13 months; we answer within 15 "
                                       "working days."),
    "passcode_forgotten": ("security", "Reset your passcode from the login screen; you need "
                           "your email and a selfie, and it takes about 5 minutes."),
    # top-ups
    "automatic_top_up": ("top-ups", "Auto top-up adds money when your balance falls below a "
                         "level you choose, from £10 to £500."),
    "pending_top_up": ("top-ups", "Card top-ups are usually instant but can stay pending for "
                       "up to 2 hours while your bank checks them."),
    "top_up_limits": ("top-ups", "You can top up up to £30,000 in any 30 days; each card "
                      "top-up is at most £5,000."),
    "top_up_reverted": ("top-ups", "A top-up is reverted when your bank rejects it; the money "
                        "goes back to your card within 7 working days."),
    "top_up_failed": ("top-ups", "Top-ups fail when the card is expired or 3-D Secure is not "
                      "completed within 5 minutes; try again or use another card."),
    "verify_top_up": ("top-ups", "We may ask you to verify a card top-up by entering a "
                      "4-digit code from your card statement; you have 72 hours."),
    "topping_up_by_card": ("top-ups", "Top up with any Visa or Mastercard debit card in the "
                           "app; the minimum top-up is £5."),
    "top_up_by_cash_or_cheque": ("top-ups", "We do not accept cash or cheques; top up by "
                                 "card or bank transfer instead, which takes under 1 day."),
    "balance_not_updated_after_cheque_or_cash_deposit": ("top-ups", "Cash and cheques cannot "
                                                         "be deposited; deposits at a bank "
                                                         "reach us as a bank transfer within "
                                                         "2 working days."),
    # transfers
    "cancel_transfer": ("transfers", "You can cancel a transfer while it is pending, usually "
                        "within the first 30 minutes; completed transfers cannot be cancelled."),
    "transfer_not_received_by_recipient": ("transfers", "UK transfers arrive within 2 hours; "
                                           "international ones can take up to 5 working days "
                                           "before the recipient sees them."),
    "declined_transfer": ("transfers", "Transfers are declined when they exceed your £25,000 "
                          "daily transfer limit or fail our security checks."),
    "pending_transfer": ("transfers", "A transfer stays pending for up to 1 working day while "
                         "we run checks; after 2 working days contact us in chat."),
    "transfer_timing": ("transfers", "Transfers in pounds arrive within 2 hours; euro "
                        "transfers within 1 working day; other currencies within 5."),
    "beneficiary_not_allowed": ("transfers", "A payee can be refused if the details do not "
                                "match; you can add up to 50 payees and 10 new ones a day."),
    "failed_transfer": ("transfers", "If a transfer fails, the money returns to your balance "
                        "within 3 working days."),
    "transfer_into_account": ("transfers", "Use your sort code and 8-digit account number to "
                              "receive transfers; UK payments arrive within 2 hours."),
    "receiving_money": ("transfers", "You can receive money in 30 currencies; incoming "
                        "transfers are free and reach your balance within 1 working day."),
    "balance_not_updated_after_bank_transfer": ("transfers", "Incoming bank transfers reach "
                                                "your balance within 2 hours in the UK and 1 "
                                                "working day from abroad."),
    # payments-disputes
    "extra_charge_on_statement": ("payments-disputes", "An unexpected charge is often a hotel "
                                  "or fuel pre-authorisation, released within 7 days."),
    "transaction_charged_twice": ("payments-disputes", "A payment that shows twice is usually "
                                  "a pending duplicate that drops off within 3 working days."),
    "request_refund": ("payments-disputes", "Merchants issue refunds, which reach your "
                       "balance within 5 to 10 working days of the merchant sending them."),
    "Refund_not_showing_up": ("payments-disputes", "If a refund has not appeared after 15 "
                              "working days, send us the merchant's receipt and we chase it."),
    "reverted_card_payment?": ("payments-disputes", "A reverted card payment returns to your "
                               "balance within 7 working days."),
    "pending_card_payment": ("payments-disputes", "Card payments stay pending until the "
                             "merchant completes them, usually within 7 days."),
    "card_payment_wrong_exchange_rate": ("payments-disputes", "A card payment abroad uses the "
                                         "rate on the day the merchant completes it, up to 3 "
                                         "days after you pay."),
    "wrong_exchange_rate_for_cash_withdrawal": ("payments-disputes", "Foreign ATMs may offer "
                                                "their own conversion; decline it to get our "
                                                "rate, which is fixed within 60 seconds."),
    # cash
    "pending_cash_withdrawal": ("cash", "Cash withdrawals show as pending until the ATM "
                                "operator confirms them, usually within 2 working days."),
    "declined_cash_withdrawal": ("cash", "A withdrawal is declined above your £500 daily "
                                 "ATM limit or when the ATM does not accept Visa."),
    "wrong_amount_of_cash_received": ("cash", "If an ATM gave you the wrong amount, report "
                                      "it within 30 days and we investigate within 10."),
    "atm_support": ("cash", "You can use any ATM that shows the Visa sign, in more than 200 "
                    "countries and territories."),
    # identity
    "why_verify_identity": ("identity", "UK law requires us to verify every customer; it "
                            "takes about 10 minutes and unlocks transfers above £250."),
    "unable_to_verify_identity": ("identity", "If verification fails, retake the photo in "
                                  "good light; after 3 failed tries an agent reviews it "
                                  "within 2 working days."),
    "verify_my_identity": ("identity", "Verify your identity in the app with a passport or "
                           "driving licence and a selfie; most checks finish within 10 "
                           "minutes."),
    "verify_source_of_funds": ("identity", "For top-ups above £10,000 we may ask for proof of "
                               "where the money comes from, such as 3 months of payslips."),
    "edit_personal_details": ("identity", "Change your address in the app under Profile; a "
                              "name change needs a document and takes up to 2 working days."),
    # account
    "age_limit": ("account", "You must be at least 18 to open an account; teens from 13 to 17 "
                  "can have a linked junior account."),
    "country_support": ("account", "You can open an account if you live in the UK or one of "
                        "31 countries in the European Economic Area."),
    "fiat_currency_support": ("account", "You can hold and exchange 30 currencies in the app, "
                              "and spend in more than 150."),
    "supported_cards_and_currencies": ("account", "We accept Visa and Mastercard cards for "
                                       "top-ups and hold balances in 30 currencies."),
    "terminate_account": ("account", "You can close your account in the app at any time; we "
                          "send any remaining balance to your bank within 5 working days."),
    "exchange_via_app": ("account", "Exchange money in the app under Balances, Exchange; "
                         "rates are locked for 30 seconds while you confirm."),
}


def passage_for(intent: str, pricing_version: str = "v3") -> Passage:
    """The passage that answers ``intent``; pricing intents read the given pricing-table version.

    An intent with no passage gets a generic help-centre one, so any intent set can be simulated.
    """
    if intent in PRICING_TABLE:
        return Passage(PRICING_DOC, pricing_version, PRICING_TABLE[intent][pricing_version])
    if intent in _PASSAGES:
        doc_id, text = _PASSAGES[intent]
        return Passage(doc_id, DOCUMENTS[doc_id].version, text)
    return generic_passage(intent)


def fallback_passage() -> Passage:
    """The general help-centre passage: what retrieval returns when it misses the intent."""
    return Passage(FALLBACK_DOC, DOCUMENTS[FALLBACK_DOC].version, FALLBACK_TEXT)


def neighbours_of(intent: str, pricing_version: str = "v3",
                  among: tuple[str, ...] = ()) -> tuple[Passage, ...]:
    """Other passages of the same document: what a retriever returns below the best match.

    A generated passage has a document of its own; its neighbours are the passages of the
    intents in ``among`` from the same domain (the intent name's first word: ``alarm_set`` and
    ``alarm_query``).
    """
    best = passage_for(intent, pricing_version)
    if best.doc_id == PRICING_DOC:
        others = [passage_for(i, pricing_version) for i in PRICING_INTENTS if i != intent]
        return (*others, Passage(FEES_FAQ_DOC, DOCUMENTS[FEES_FAQ_DOC].version, FEES_FAQ))
    if is_generic(intent):
        domain = _domain(intent)
        return tuple(passage_for(i) for i in among
                     if i != intent and is_generic(i) and _domain(i) == domain)
    return tuple(passage_for(i) for i, (doc, _) in _PASSAGES.items()
                 if doc == best.doc_id and i != intent)


# --- generated passages for intents outside BANKING77 -----------------------------------------

_GENERIC_PREFIX = "kb-"
_POOLS: dict[str, tuple[str, ...]] = {
    "minutes": ("2", "4", "6", "8", "12", "20"),
    "seconds": ("15", "30", "45", "90"),
    "count": ("3", "5", "10", "25", "50"),
    "days": ("7", "14", "30", "60", "90"),
    "price": ("£1.49", "£2.99", "£3.99", "£4.49", "£6.99"),
    "pct": ("92%", "95%", "97%", "99%"),
    "countries": ("40", "65", "110"),
}
_GENERIC_TEMPLATES = (
    "{Topic} works in the app and on up to {count} linked devices; a request is handled within "
    "{seconds} seconds and {pct} succeed on the first try.",
    "You can use {topic} up to {count} times a day for free; after that each use costs {price}, "
    "and your history is kept for {days} days.",
    "{Topic} is available in {countries} countries; if it fails, support replies within {minutes} "
    "minutes and {pct} of cases close the same day.",
    "With the Plus plan at {price} a month, {topic} handles up to {count} requests at once and "
    "keeps them for {days} days.",
    "{Topic} takes about {minutes} minutes to set up; changes apply within {seconds} seconds and "
    "you can undo them for {days} days.",
)
FALLBACK_TEXT = ("Questions about your account are answered in the app under Help; our team "
                 "replies within 2 working days and closes 90% of cases within 5.")


def _digest(intent: str) -> bytes:
    # A stable hash (Python's hash() is salted per process).
    return hashlib.sha256(intent.encode("utf-8")).digest()


def _domain(intent: str) -> str:
    return intent.split("_", 1)[0].lower()


def is_generic(intent: str) -> bool:
    """True when ``intent`` reads a generated passage (not BANKING77's hand-written ones)."""
    return intent not in PRICING_TABLE and intent not in _PASSAGES


def generic_doc(intent: str) -> str:
    return _GENERIC_PREFIX + re.sub(r"[^a-z0-9]+", "-", intent.lower()).strip("-")


def generic_passage(intent: str, revision: int = 0) -> Passage:
    """The generated passage of ``intent``; ``revision`` 1 is its next version (every figure
    changed, version bumped): what a stale-document incident serves out of date, in reverse."""
    digest = _digest(intent)
    template = _GENERIC_TEMPLATES[digest[0] % len(_GENERIC_TEMPLATES)]
    topic = intent.replace("_", " ").strip(" ?").lower()
    values = {name: pool[(digest[1 + k] + revision) % len(pool)]
              for k, (name, pool) in enumerate(sorted(_POOLS.items()))}
    text = template.format(Topic=topic[:1].upper() + topic[1:], topic=topic, **values)
    doc = document(generic_doc(intent))
    return Passage(doc.doc_id, f"v{int(doc.version[1:]) + revision}", text)


def document(doc_id: str) -> Document:
    """A document's metadata; generated documents get a stable version and dates from their id."""
    if doc_id in DOCUMENTS:
        return DOCUMENTS[doc_id]
    digest = _digest(doc_id)
    return Document(doc_id, f"v{1 + digest[0] % 6}", 20.0 + digest[1] % 120, 0.5 + (digest[2] % 24) / 2)


def number_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, token)`` of every figure in ``text`` (``£1,000``, ``2.5%``, ``14``)."""
    return [(m.start(), m.end(), m.group()) for m in _NUMBER.finditer(text)]


def normalise_number(token: str) -> str:
    """The bare value of a figure, so equal amounts compare equal: ``£0.50`` -> ``0.5``.

    >>> normalise_number("£1,000"), normalise_number("2.50%")
    ('1000', '2.5')
    """
    return f"{Decimal(token.strip('£%').replace(',', '')).normalize():f}"


def numbers_in(text: str) -> tuple[str, ...]:
    """The bare values of the figures in ``text``, in order."""
    return tuple(normalise_number(t) for _, _, t in number_spans(text))


def _all_texts() -> list[str]:
    texts = [t for versions in PRICING_TABLE.values() for t in versions.values()]
    texts += [t for _, t in _PASSAGES.values()]
    texts += [FEES_FAQ, FALLBACK_TEXT]
    return texts


# Every figure any hand-written passage states: a hallucinated figure must be none of these.
KNOWN_NUMBERS: frozenset[str] = frozenset(n for t in _all_texts() for n in numbers_in(t))
# Every figure a generated passage (any revision) can state.
GENERIC_NUMBERS: frozenset[str] = frozenset(normalise_number(v) for pool in _POOLS.values() for v in pool)
