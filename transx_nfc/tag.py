"""NFC I/O with nfcpy, bounded in time: tapping as a reader, and emulating a card (Type 3, FeliCa:
the only tag type nfcpy emulates) for tests and demos over its `udp` driver.

nfcpy blocks; every wait here is bounded (`terminate` is checked between listen/sense rounds, and
each card session ends when the reader goes quiet), so Ctrl-C and deadlines take effect within ~1 s.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

IDM = "03FEFFE011223344"  # NFCID2: must not start 01FE, which readers take for a P2P device
PMM = "01E0000000FFFF00"  # generous response times for readers
NDEF_SYSTEM = "12FC"
MEMORY = 2048  # bytes of NDEF data area


def tt3_memory(octets: bytes, size: int = MEMORY) -> bytearray:
    """A Type 3 Tag's memory: the NDEF attribute block, then the message, padded to `size`."""
    size = (max(size, len(octets)) + 15) // 16 * 16
    attr = bytearray(16)
    attr[0], attr[1], attr[2] = 0x10, 12, 8  # mapping version 1.0, blocks per read, blocks per write
    attr[3:5] = struct.pack(">H", size // 16)
    attr[10] = 0x01  # read-write
    attr[11:14] = struct.pack(">I", len(octets))[1:]
    attr[14:16] = struct.pack(">H", sum(attr[0:14]))
    return attr + bytearray(octets) + bytearray(size - len(octets))


def tt3_message(mem: bytearray) -> bytes | None:
    """The NDEF message in the memory, or None while a write is unfinished or the block is damaged."""
    attr = mem[:16]
    if sum(attr[0:14]) != struct.unpack(">H", attr[14:16])[0] or attr[9] != 0:
        return None
    length = struct.unpack(">I", b"\0" + bytes(attr[11:14]))[0]
    return bytes(mem[16:16 + length])


class EmulatedCard:
    """A card holding an NDEF message that readers may read and rewrite; it keeps its memory across taps."""

    def __init__(self, octets: bytes) -> None:
        self.mem = tt3_memory(octets)

    @property
    def message(self) -> bytes | None:
        return tt3_message(self.mem)

    def _read(self, n, rb, re):
        return self.mem[n * 16:(n + 1) * 16] if n < len(self.mem) // 16 else None

    def _write(self, n, data, wb, we) -> bool:
        if n >= len(self.mem) // 16:
            return False
        self.mem[n * 16:(n + 1) * 16] = data
        return True

    def serve(self, clf, terminate: Callable[[], bool], on_tap: Callable[[], None], idle: float = 2.0) -> None:
        """Answer readers until `terminate()`; `on_tap` after each tap (the reader released us)."""
        import nfc

        def on_startup(target):
            target.brty = "212F"
            target.sensf_res = bytearray.fromhex("01" + IDM + PMM + NDEF_SYSTEM)
            return target

        def on_connect(tag):
            tag.add_service(0x0009, self._read, self._write)  # NDEF read/write
            tag.add_service(0x000B, self._read, lambda *a: False)  # NDEF read-only
            return False  # we run the command loop ourselves, with an idle bound (nfcpy's has none)

        while not terminate():
            tag = clf.connect(card={"on-startup": on_startup, "on-connect": on_connect, "timeout": 0.5},
                              terminate=terminate)
            if tag is None or tag is False:
                return
            if isinstance(tag, nfc.tag.TagEmulation):
                _answer(tag, idle)
                on_tap()


def _answer(tag, idle: float) -> None:
    import nfc.clf

    try:
        rsp = tag.process_command(tag.cmd)
    except Exception:
        rsp = None
    while True:
        try:
            cmd = tag.send_response(rsp, idle)
        except (nfc.clf.BrokenLinkError, nfc.clf.TimeoutError):
            return  # the reader released us, or went quiet
        except nfc.clf.CommunicationError:
            rsp = None
            continue
        if cmd is None:
            return
        try:
            rsp = tag.process_command(cmd)
        except Exception:
            rsp = None


def tap(clf, on_tag: Callable, terminate: Callable[[], bool], targets=("212F", "106A", "106B")):
    """Wait for one tag (until `terminate()`), run `on_tag(tag)` while it is present, release it.
    Returns on_tag's result, or None if terminated."""
    import nfc

    result: list = []

    def on_connect(tag):
        result.append(on_tag(tag))
        return False

    while not terminate():
        try:
            found = clf.connect(rdwr={"targets": list(targets), "on-connect": on_connect, "iterations": 1,
                                      "interval": 0.1}, terminate=terminate)
        except nfc.tag.TagCommandError as e:  # the tag left in the middle
            result.append(e)
            found = True
        if found is None or found is False:
            return None
        clf.sense()  # RF off: ends the card's session now (on udp the next discovery would lose a second)
        time.sleep(0.05)
        if result:
            return result[0]
    return None
