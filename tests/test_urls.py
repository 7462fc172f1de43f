"""What may be shown of an endpoint URL: scheme and host, never credentials, path or query."""

from __future__ import annotations

import pytest

from aether._urls import display_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://mainnet.infura.io/v3/SECRET", "https://mainnet.infura.io"),
        ("wss://eth-mainnet.g.alchemy.com/v2/SECRET", "wss://eth-mainnet.g.alchemy.com"),
        ("http://user:SECRET@node.example:8545/x", "http://node.example:8545"),
        ("ws://[::1]:8546/SECRET?k=SECRET", "ws://[::1]:8546"),
        ("https://relay.example?auth=SECRET", "https://relay.example"),
        ("https://relay.example#SECRET", "https://relay.example"),
        # a password with an unencoded "/": its first part would pass for the host
        ("https://apikey:SECRET/more@builder.example/", "https://<host hidden: the URL may hold credentials>"),
        ("  wss://node.example:8546  ", "wss://node.example:8546"),
        ("not a url SECRET", "<unparseable url>"),
    ],
)
def test_display_url_keeps_scheme_and_host_only(url: str, shown: str) -> None:
    assert display_url(url) == shown
    assert "SECRET" not in display_url(url)


# --------------------------------------------------------------------------- hostile passwords

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from aether._urls import HIDDEN_HOST  # noqa: E402

_RESERVED = "@:/?#[]%!$&'()*+,;= \\"
_secrets = st.text(alphabet=st.sampled_from(_RESERVED + "abcXYZ019.-_~"), min_size=1, max_size=24)


@pytest.mark.parametrize("reserved", list(_RESERVED))
def test_each_reserved_character_in_a_password_never_shows_it(reserved: str) -> None:
    pw = f"SE{reserved}CRET"
    for url in (f"https://user:{pw}@node.example:8545/v3/KEY?x=1",
                f"https://user:{pw}@node.example",
                f"wss://{pw}@node.example/ws"):
        shown = display_url(url)
        assert shown in ("https://node.example:8545", "https://node.example", "wss://node.example",
                         f"https://{HIDDEN_HOST}", f"wss://{HIDDEN_HOST}"), (url, shown)
        assert "SE" not in shown and "CRET" not in shown and "user" not in shown and "KEY" not in shown


@settings(max_examples=1500, deadline=None)
@given(user=_secrets, password=_secrets, path=_secrets, query=_secrets,
       port=st.none() | st.integers(min_value=1, max_value=65535), scheme=st.sampled_from(["http", "https", "ws", "wss"]))
def test_any_password_path_or_query_is_dropped(user: str, password: str, path: str, query: str, port: int | None,
                                               scheme: str) -> None:
    host = "node-7.example.org" + ("" if port is None else f":{port}")
    url = f"{scheme}://{user}:{password}@{host}/{path}?{query}"
    shown = display_url(url)
    # Either the true host, or nothing of the host: never a guess made of userinfo, path or query.
    assert shown in (f"{scheme}://{host}", f"{scheme}://{HIDDEN_HOST}"), (url, shown)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_display_of_any_text_is_scheme_and_a_plain_host_or_hidden(text: str) -> None:
    shown = display_url(text)
    if shown == "<unparseable url>":
        return
    scheme, _, host = shown.partition("://")
    assert host == HIDDEN_HOST or not any(c in host for c in "@/?#%\\ ")


def test_a_host_read_across_a_second_at_is_never_shown() -> None:
    # found by hypothesis: both readings agreed on "0", a piece of the password and the query
    assert display_url("http://0:@0?@node-7.example.org/0?@0") == f"http://{HIDDEN_HOST}"
    assert display_url("http://u:p@ss@host.example/") == f"http://{HIDDEN_HOST}"
    assert display_url("http://host.example/a?mail=x@y") == f"http://{HIDDEN_HOST}"
    assert display_url("http://u:p@host.example:8545/v3/k") == "http://host.example:8545"
