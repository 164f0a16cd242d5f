"""PII redaction of English and Italian comments: each kind, what must stay, order, properties."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.redact import Redactor, iban_is_valid, luhn_is_valid

REDACTOR = Redactor()


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        # e-mail
        ("scrivete a mario.rossi@example.it.", "scrivete a [EMAIL].", {"email": 1}),
        (
            "Reply to J.Smith+nps@mail.example.co.uk, not to me",
            "Reply to [EMAIL], not to me",
            {"email": 1},
        ),
        ("email:anna_b1985@posta.it (personale)", "email:[EMAIL] (personale)", {"email": 1}),
        # phone: Italian mobile and landline, international, North American, UK
        ("Chiamatemi al 347 123 4567", "Chiamatemi al [PHONE]", {"phone": 1}),
        ("cell. 3471234567 oppure 347-123-4567", "cell. [PHONE] oppure [PHONE]", {"phone": 2}),
        ("ufficio 02 1234 5678, casa 06/12345678", "ufficio [PHONE], casa [PHONE]", {"phone": 2}),
        (
            "dall'estero +39 347 123 4567 o 0039 02 1234 5678",
            "dall'estero [PHONE] o [PHONE]",
            {"phone": 2},
        ),
        (
            "call me at (555) 123-4567 or +1 555.123.4567 or 1-800-555-0199",
            "call me at [PHONE] or [PHONE] or [PHONE]",
            {"phone": 3},
        ),
        (
            "UK office +44 (0)20 7946 0958, mobile 07700 900123",
            "UK office [PHONE], mobile [PHONE]",
            {"phone": 2},
        ),
        # card numbers (Luhn-valid test numbers)
        ("paid with 4111 1111 1111 1111 twice", "paid with [CARD] twice", {"card": 1}),
        ("carta 5555-5555-5555-4444 addebitata", "carta [CARD] addebitata", {"card": 1}),
        ("amex 3782 822463 10005", "amex [CARD]", {"card": 1}),
        ("visa 4222222222222 (13 digits)", "visa [CARD] (13 digits)", {"card": 1}),
        ("19 digits 4000 0000 0000 0000 006.", "19 digits [CARD].", {"card": 1}),
        # IBAN: printed in groups of four, compact, lower case, other countries
        (
            "IBAN IT60 X054 2811 1010 0000 0123 456 per il rimborso",
            "IBAN [IBAN] per il rimborso",
            {"iban": 1},
        ),
        (
            "rimborso su it60x0542811101000000123456 grazie",
            "rimborso su [IBAN] grazie",
            {"iban": 1},
        ),
        ("refund to GB82 WEST 1234 5698 7654 32.", "refund to [IBAN].", {"iban": 1}),
        ("Konto DE89 3704 0044 0532 0130 00 bitte", "Konto [IBAN] bitte", {"iban": 1}),
        # a four-letter word after a complete last group is not part of the IBAN
        ("BE68 5390 0754 7034 ciao", "[IBAN] ciao", {"iban": 1}),
    ],
)
def test_each_kind_in_english_and_italian(text: str, expected: str, counts: dict) -> None:
    assert REDACTOR.redact_with_counts(text) == (expected, counts)


@pytest.mark.parametrize(
    "text",
    [
        "Consegna prevista il 2024-05-01, arrivata il 03/05/2024 alle 14:30.",
        "Delivered on 05.01.2024 at 9.45, two days late (12/31/24 was promised).",
        "Ordine n. 1234567 ancora in lavorazione",
        "order #12345678 and ticket 23456789 still open",  # 8 digits, no phone shape
        "Pagato € 1.234,50 per niente; the refund was $ 12.345.678",
        "Prezzo 1.234.567,89 EUR, troppo",
        "Voto 9/10, NPS 10 su 10; I'd give 0 1 2 3 4 5 6 7 8 9 10 ... a 7",
        "Anni 2019 2020 2021 2022, sempre cliente",
        "test card 4111 1111 1111 1112 (Luhn fails)",
        "IBAN IT60 X054 2811 1010 0000 0123 457 (check digits fail)",
        "Waited 45 minutes, 3 calls, version 2.14.1, room 101",
    ],
)
def test_dates_times_orders_prices_scores_and_invalid_numbers_stay(text: str) -> None:
    assert REDACTOR.redact_with_counts(text) == (text, {})


def test_mixed_text_counts_every_kind() -> None:
    text = (
        "Pessimo servizio. Scrivete a mario.rossi@example.it o chiamate il 347 123 4567; "
        "I paid twice with 4111 1111 1111 1111, please refund IT60 X054 2811 1010 0000 0123 456 "
        "or call +44 20 7946 0958. Order 1234567 of 2024-05-01, € 1.234,50."
    )
    redacted, counts = REDACTOR.redact_with_counts(text)
    assert redacted == (
        "Pessimo servizio. Scrivete a [EMAIL] o chiamate il [PHONE]; "
        "I paid twice with [CARD], please refund [IBAN] "
        "or call [PHONE]. Order 1234567 of 2024-05-01, € 1.234,50."
    )
    assert counts == {"email": 1, "phone": 2, "card": 1, "iban": 1}
    assert REDACTOR.redact(text) == redacted


def test_iban_and_card_digits_are_not_taken_as_phones() -> None:
    # Phones first would have read "0000 0123 456" and "1111 1111" style groups as numbers.
    text = "IBAN IT60 X054 2811 1010 0000 0123 456, carta 4111 1111 1111 1111, tel 02 1234 5678"
    assert REDACTOR.redact_with_counts(text) == (
        "IBAN [IBAN], carta [CARD], tel [PHONE]",
        {"iban": 1, "card": 1, "phone": 1},
    )


def test_adjacent_numbers_in_one_run_are_split() -> None:
    assert REDACTOR.redact("ordine 123456 3471234567 poi 02 1234 5678 06 9876 5432") == (
        "ordine 123456 [PHONE] poi [PHONE] [PHONE]"
    )
    # a date in the same run never becomes part of a phone number
    assert REDACTOR.redact("il 01/05/2024 3 volte, il 01/05/2024 3471234567") == (
        "il 01/05/2024 3 volte, il 01/05/2024 [PHONE]"
    )


@pytest.mark.parametrize(
    "iban",
    [
        "IT60X0542811101000000123456",
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
        "ES9121000418450200051332",
        "NL91ABNA0417164300",
        "NO9386011117947",  # shortest (15)
        "MT84MALT011000012345MTLCAST001S",  # 31, letters in the BBAN
        "ch9300762011623852957",  # lower case
    ],
)
def test_iban_check(iban: str) -> None:
    assert iban_is_valid(iban)
    # mod 97 catches every single-character substitution
    assert not iban_is_valid(iban[:-1] + ("1" if iban[-1] != "1" else "2"))
    assert not iban_is_valid(iban[:2] + "00" + iban[4:])


def test_iban_check_rejects_bad_shapes() -> None:
    assert not iban_is_valid("6060X0542811101000000123456")  # no country letters
    assert not iban_is_valid("NO938601111794")  # 14 characters
    assert not iban_is_valid("IT60X0542811101000000123456" + "0" * 8)  # 35 characters


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4111111111111111", True),
        ("5555555555554444", True),
        ("378282246310005", True),
        ("6011111111111117", True),
        ("4111111111111112", False),
        ("1234567812345678", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_is_valid(number) is valid


# --- extra patterns -----------------------------------------------------------------------


def test_extra_patterns_get_upper_cased_placeholders_and_counts() -> None:
    redactor = Redactor({"customer_id": r"CUST-\d{6}", "Ticket": r"(?i)\btk-[a-z]{3}\b"})
    text = "Cliente CUST-123456, pratica TK-abc: richiamate il 347 123 4567"
    assert redactor.redact_with_counts(text) == (
        "Cliente [CUSTOMER_ID], pratica [TICKET]: richiamate il [PHONE]",
        {"customer_id": 1, "ticket": 1, "phone": 1},
    )
    assert redactor.kinds == ("email", "iban", "card", "customer_id", "ticket", "phone")


def test_extra_patterns_run_before_phones_and_never_touch_placeholders() -> None:
    # a ten-digit account id would otherwise be a North American phone number
    redactor = Redactor({"account": r"ACCT-\d{10}", "shouting": r"\b[A-Z]{5,}\b"})
    assert redactor.redact("ACCT-5551234567 is WRONG, call [PHONE] or a@b.it NOW") == (
        "[ACCOUNT] is [SHOUTING], call [PHONE] or [EMAIL] NOW"
    )


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ({"customer_id": r"CUST-(\d{6}"}, r"'customer_id': invalid regex 'CUST-\(\\\\d\{6\}'"),
        ({"order2": r"ORD-\d+"}, "'order2': the name must be letters and underscores"),
        ({"bad name": r"x"}, "'bad name': the name must be letters"),
        ({"Phone": r"\d+"}, "'Phone': 'phone' is a built-in kind"),
        ({"anything": r"x*"}, "'anything': 'x\\*' matches empty text"),
        ({"code": r"A\d", "CODE": r"B\d"}, r"names differ only in case: \['code'\]"),
    ],
)
def test_bad_extra_patterns_fail_fast_naming_the_pattern(patterns: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Redactor(patterns)


# --- properties -----------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")
EXTRA = Redactor({"customer_id": r"CUST-\d{6}", "code": r"(?i)\bcode\w*"})

FRAGMENTS = st.sampled_from(
    [
        "347 123 4567",
        "+39 ",
        "(555) 123-4567",
        "4111 1111 1111 1111",
        "4111111111111111",
        "IT60 X054 2811 1010 0000 0123 456",
        "mario.rossi@example.it",
        "a@b.co",
        "2024-05-01",
        "01/05/2024",
        "€ ",
        ",50",
        "CUST-123456",
        "code",
        "[PHONE]",
        "[CARD]",
        "Chiamatemi al ",
        " grazie",
    ]
)
NOISE = st.text(alphabet="0123456789 .-/+()@[]abcIKTX€,_è", max_size=30)
COMMENTS = st.lists(st.one_of(FRAGMENTS, NOISE, st.text(max_size=10)), max_size=10).map("".join)


@settings(max_examples=1500, deadline=None)
@given(COMMENTS)
def test_redaction_is_idempotent_and_adds_no_digits(text: str) -> None:
    redacted, counts = EXTRA.redact_with_counts(text)
    assert EXTRA.redact(redacted) == redacted
    # placeholders carry no digits: redaction only ever removes digits
    assert not Counter(c for c in redacted if c.isdigit()) - Counter(c for c in text if c.isdigit())
    # every placeholder in the output was in the input or is a counted replacement
    added = Counter(PLACEHOLDER.findall(redacted)) - Counter(PLACEHOLDER.findall(text))
    assert added == Counter({f"[{kind.upper()}]": n for kind, n in counts.items()})


WORDS = st.lists(
    st.sampled_from(["grazie", "the", "order", "10/10", "2024-05-01", "€ 12,50", "347", ",", "."]),
    max_size=5,
).map(" ".join)


@settings(max_examples=500, deadline=None)
@given(WORDS, st.emails(), WORDS)
def test_no_email_survives(before: str, email: str, after: str) -> None:
    redacted, counts = REDACTOR.redact_with_counts(f"{before} {email} {after}")
    assert "@" not in redacted
    assert counts.get("email") == 1


@st.composite
def card_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A Luhn-valid 13-19 digit number, printed solid or in groups of 4, 5 or 6."""
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("123456789")) + draw(
        st.text("0123456789", min_size=length - 2, max_size=length - 2)
    )
    number = next(body + d for d in "0123456789" if luhn_is_valid(body + d))
    link = draw(st.sampled_from(["", " ", "-"]))
    size = draw(st.sampled_from([4, 5, 6]))
    return link.join(number[i : i + size] for i in range(0, length, size)), number


@settings(max_examples=500, deadline=None)
@given(WORDS, card_numbers(), WORDS)
def test_no_card_number_survives(before: str, card: tuple[str, str], after: str) -> None:
    printed, number = card
    redacted = REDACTOR.redact(f"{before} {printed} {after}")
    assert "[CARD]" in redacted
    assert printed not in redacted
    assert number not in re.sub(r"\D", "", redacted)


def test_text_without_digits_or_at_sign_is_returned_as_is() -> None:
    text = "Servizio lento, personale scortese [PHONE] and nobody called back!"
    assert REDACTOR.redact_with_counts(text) == (text, {})
