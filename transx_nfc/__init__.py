"""TransX's NFC plugin: charging stations read EV owners' signed authorisations from NFC cards or
phones (nfcpy), open and close charging sessions on chain, and write signed receipts back.

Installed with `pip install transx[nfc]`; the node core never imports nfcpy (see plugin.py).
"""
