"""Text from Azure or users, made safe for the place it is shown: XML 1.0 (workbook, JUnit),
UTF-8 files (lone surrogates), a terminal (escape sequences), a reviewer's eye (bidi
controls), and free text that may quote a SAS token. Characters that cannot be shown are
written as visible escapes (`\\x1b`, `\\ufffe`), never dropped, so two names that differ
only there stay different.
"""

from __future__ import annotations

import re

# Embedding and isolate controls and marks that reorder how text is displayed (Trojan Source).
BIDI = "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
# XML 1.0 allows tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD and beyond U+FFFF: the rest
# (C0 controls, lone surrogates, U+FFFE, U+FFFF) makes a file no XML parser reads. Bidi
# controls are legal XML but would make a cell or a test name read in another order than it
# is: they are shown escaped too.
XML_INVALID = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff{BIDI}]")
# The same set in RE2 syntax, for pyarrow.compute (pyarrow text cannot hold surrogates).
XML_INVALID_RE2 = (r"[\x00-\x08\x0b\x0c\x0e-\x1f\x{FFFE}\x{FFFF}\x{202A}-\x{202E}"
                   r"\x{2066}-\x{2069}\x{200E}\x{200F}\x{061C}]")
SURROGATES = re.compile("[\ud800-\udfff]")
# C0, DEL, C1 (CSI U+009B and OSC U+009D among them), line and paragraph separators, bidi.
CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{BIDI}\ud800-\udfff\ufffe\uffff]")
# Query parameters of Azure Storage shared access signatures (service, account, user
# delegation): a query holding any of them is a SAS, whatever the text around it.
SAS_KEYS = ("sig|sv|se|st|sp|sr|spr|srt|ss|si|sip|sdd|ses|skoid|sktid|skt|ske|sks|skv|saoid|"
            "suoid|scid|rscc|rscd|rsce|rscl|rsct")
_URL_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^?\s\"']*)\?[^\s\"']*")
_SAS_QUERY = re.compile(rf"(?i)\?[^\s\"'?]*?(?<![a-z0-9_])(?:{SAS_KEYS})=[^\s\"']*")
_SAS_PAIR = re.compile(r"(?i)(?<![a-z0-9_])(sig|skoid|sktid|skt|ske|sks|skv|saoid|suoid)=[^&\s\"']*")


def visible(char: str) -> str:
    """One character as a Python-style escape: `\\x1b`, `\\ufffe`, `\\U0010fffe`."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def _escape(match: re.Match) -> str:
    return visible(match.group())


def xml_text(value) -> str:
    """Text any XML 1.0 parser reads, in the order it is written: forbidden characters and
    bidi controls shown as escapes."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return XML_INVALID.sub(_escape, str(value))


def without_surrogates(text: str) -> str:
    """Text that encodes as UTF-8: lone surrogates (from undecodable bytes, or a `\\ud800`
    escape in JSON or YAML) shown as escapes."""
    return SURROGATES.sub(_escape, text)


def json_without_surrogates(dumped: str) -> str:
    """JSON text (dumped with ensure_ascii=False) that encodes as UTF-8: each lone surrogate,
    which can only stand inside a string, becomes the text of its escape (a backslash and
    `ud800` once read), never a lone surrogate again."""
    return SURROGATES.sub(lambda match: "\\\\" + visible(match.group())[1:], dumped)


def shown(text: str) -> str:
    """Text for a terminal, a shell comment or a code review: no control character, escape
    sequence (ESC, CSI, OSC), line break or bidi control, each shown as an escape."""
    return CONTROL.sub(_escape, str(text))


def redact_sas(text: str) -> str:
    """Free text without SAS tokens: the query of any URL (with a scheme or without one, as in
    `acct.blob.core.windows.net/c/x.vhd?sv=...&sig=...`) and stray `sig=` values."""
    text = _URL_QUERY.sub(r"\1?...", str(text))
    text = _SAS_QUERY.sub("?...", text)
    return _SAS_PAIR.sub(r"\1=...", text)
