"""How an endpoint URL may be shown: scheme and host (with port) only.

Node and builder URLs often carry an API key in the path or query, or
credentials in the userinfo. Every message, log line and error that names an
endpoint goes through :func:`display_url`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["display_url", "url_problem"]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)(.*)$", re.S)


def display_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no userinfo, path, query or fragment.

    An ``@`` after the first ``/`` may be a password holding an unencoded ``/``
    (its first part would pass for the host), so then the host is hidden too.
    """
    m = _SCHEME.match(url.strip())
    if m is None:
        return "<unparseable url>"
    rest = re.split(r"[?#]", m.group(2), maxsplit=1)[0]
    authority, _, path = rest.partition("/")
    if "@" in authority:
        host = authority.rpartition("@")[2]
    elif "@" in path:
        host = "<host hidden: the URL may hold credentials>"
    else:
        host = authority
    return f"{m.group(1)}{host}"


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be dialled as written (a bad port, spaces, non-ASCII), or None.

    Scheme and host are the caller's to check (each accepts its own schemes).
    """
    try:
        urlsplit(url).port  # noqa: B018 (parsing it is the check)
    except ValueError:
        return "malformed host or port"
    if any(c.isspace() or not c.isascii() for c in url):
        return "spaces or non-ASCII characters (percent-encode them)"
    return None
