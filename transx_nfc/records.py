"""What a TransX card holds, as NDEF records (NFC Forum external types):

    urn:nfc:ext:transx.org:auth     the owner's signed Authorisation (consensus/rules/charging.py), 1 record
    urn:nfc:ext:transx.org:soc      the EV's state of charge in percent, 1 byte (optional, unsigned)
    urn:nfc:ext:transx.org:receipt  a station's signed Receipt, one per session (the newest few are kept)

Payloads are the canonical encodings of charging.py; signatures are checked on reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.rules.charging import AuthError, Authorisation, Receipt, decode_authorisation, decode_receipt

AUTH_TYPE = "urn:nfc:ext:transx.org:auth"
SOC_TYPE = "urn:nfc:ext:transx.org:soc"
RECEIPT_TYPE = "urn:nfc:ext:transx.org:receipt"
KEEP_RECEIPTS = 3


class CardError(Exception):
    """A tag that is unreadable or not a TransX card; the message is for the person at the charger."""


class ForeignCard(CardError):
    """A readable tag that holds no TransX authorisation (a bank card, a blank tag)."""


@dataclass
class CardContents:
    auth: Authorisation
    soc: int | None = None
    receipts: list[Receipt] = field(default_factory=list)


def card_records(auth: Authorisation, soc: int | None = None, receipts: list[Receipt] = ()) -> list:
    import ndef

    records = [ndef.Record(AUTH_TYPE, "auth", auth.encoded)]
    if soc is not None:
        records.append(ndef.Record(SOC_TYPE, "soc", bytes([soc])))
    records += [ndef.Record(RECEIPT_TYPE, "r", r.encoded) for r in list(receipts)[-KEEP_RECEIPTS:]]
    return records


def encode_card(auth: Authorisation, soc: int | None = None, receipts: list[Receipt] = ()) -> bytes:
    import ndef

    return b"".join(ndef.message_encoder(card_records(auth, soc, receipts)))


def read_records(records) -> CardContents:
    """A card's contents from its NDEF records; `CardError` if it holds no valid authorisation."""
    auths = [r for r in records if r.type.lower() == AUTH_TYPE]
    if not auths:
        raise ForeignCard("this card holds no TransX authorisation (a foreign or blank tag)")
    try:
        auth = decode_authorisation(bytes(auths[0].data))
    except AuthError as e:
        raise CardError(str(e)) from None
    soc = None
    for r in records:
        if r.type.lower() == SOC_TYPE and len(r.data) == 1 and r.data[0] <= 100:
            soc = r.data[0]
    receipts = []
    for r in records:
        if r.type.lower() == RECEIPT_TYPE:
            try:
                receipts.append(decode_receipt(bytes(r.data)))
            except AuthError:
                pass  # a damaged old receipt does not spoil the card
    return CardContents(auth, soc, receipts)


def decode_card(octets: bytes) -> CardContents:
    import ndef

    try:
        records = list(ndef.message_decoder(bytes(octets), errors="strict"))
    except Exception as e:  # ndef.DecodeError and friends
        raise CardError(f"unreadable tag: {e}") from None
    return read_records(records)
