"""Text as falnb shows it: a URL's ``user:password@`` hidden.

A queue, storage or proxy URL may carry credentials (``https://user:secret@proxy.example``: httpx sends them
as basic auth).  They must not reach an error, a repr, a log or a notebook's output, like the key itself, so
every message falnb raises (:class:`~falnb.FalnbError`) and every URL it prints goes through
:func:`hide_credentials`.
"""

from __future__ import annotations

import re

__all__ = ["hide_credentials"]

#: a URL's scheme, then the userinfo up to the ``@`` before its host
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def hide_credentials(text: str) -> str:
    """``text`` with each URL's userinfo replaced by ``***`` (``http://***@host/...``)."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text
