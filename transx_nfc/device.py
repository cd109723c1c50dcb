"""Opening an NFC device (nfcpy) with errors a person at a charger can act on."""

from __future__ import annotations

import importlib.util
import socket


def missing_dependencies() -> str | None:
    """Why NFC cannot work here (nfcpy or ndeflib not installed), or None."""
    for module, package in (("nfc", "nfcpy"), ("ndef", "ndeflib")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed: pip install 'transx[nfc]'"
    return None


class DeviceError(Exception):
    """No usable reader at the given device string; one line for the console."""


def free_udp_port() -> int:
    """A free UDP port on 127.0.0.1 that nfcpy's udp driver can use (no service name)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if socket.getnameinfo(("127.0.0.1", port), socket.NI_NUMERICHOST)[1] == str(port):
            return port
    raise DeviceError("no free UDP port without a service name on 127.0.0.1")


def check_path(path: str) -> None:
    """Refuse what nfcpy's udp driver would trip on (a port with a service name makes it crash)."""
    if path.startswith("udp"):
        parts = path.split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise DeviceError(f"device {path!r}: use udp:HOST:PORT")
        port = int(parts[2])
        if not 1 <= port <= 65535:
            raise DeviceError(f"device {path!r}: port {port} is out of range 1-65535")
        if socket.getnameinfo(("127.0.0.1", port), socket.NI_NUMERICHOST)[1] != str(port):
            raise DeviceError(f"device {path!r}: nfcpy's udp driver cannot use port {port} (it has a service name); "
                              "pick another port")


def open_frontend(path: str):
    """An open `nfc.ContactlessFrontend`, or `DeviceError` naming the device tried and the likely cause."""
    check_path(path)
    import nfc

    try:
        return nfc.ContactlessFrontend(path)
    except FileNotFoundError as e:
        raise DeviceError(f"no NFC reader at {path!r}: {e} (USB readers need the system libusb-1.0; "
                          "Debian: apt install libusb-1.0-0)") from None
    except OSError as e:
        hint = " (is the reader plugged in? USB readers also need libusb-1.0 and access to the device)" \
            if path.startswith(("usb", "tty", "com")) else ""
        raise DeviceError(f"no NFC reader at {path!r}: {e.strerror or e}{hint}") from None
    except Exception as e:  # serial.SerialException, socket.gaierror, ValueError
        raise DeviceError(f"cannot open NFC device {path!r}: {e}") from None
