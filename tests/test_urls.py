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
