"""How an endpoint URL may be shown: scheme and host (with port) only.

Node and builder URLs often carry an API key in the path or query, or
credentials in the userinfo. Every message, log line and error that names an
endpoint goes through :func:`display_url`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["HIDDEN_HOST", "display_url", "url_problem"]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)(.*)$", re.S)
#: What a host may look like to be shown: a name or IPv4 address, or a bracketed IPv6
#: address, with an optional port. Anything else may be a piece of a password.
_HOST = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_END_OF_AUTHORITY = re.compile(r"[/?#\\]")

HIDDEN_HOST = "<host hidden: the URL may hold credentials>"


def display_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no userinfo, path, query or fragment.

    A password may hold any character unencoded (``@ : / ? # [ ] %``), and then
    no parser can tell where the userinfo ends. So the host is shown only when the
    reading is unambiguous: no ``@`` at all (no userinfo), or exactly one ``@``
    and it stands before the first ``/ ? # \\`` (a userinfo holding none of them).
    Any other ``@`` may belong to a password, a path or a query, and any host read
    across it could be a piece of a secret, so the host is hidden too.
    """
    m = _SCHEME.match(url.strip())
    if m is None:
        return "<unparseable url>"
    scheme, rest = m.group(1), m.group(2)
    authority = _END_OF_AUTHORITY.split(rest, maxsplit=1)[0]
    ats = rest.count("@")
    if ats > 1 or (ats == 1 and "@" not in authority):
        return f"{scheme}{HIDDEN_HOST}"
    host = authority.rpartition("@")[2]
    if not _HOST.fullmatch(host):
        return f"{scheme}{HIDDEN_HOST}"
    return f"{scheme}{host}"


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
