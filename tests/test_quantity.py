"""The one hex-quantity parser for node data refuses what ``int(x, 16)`` lets through."""

from __future__ import annotations

import pytest

from aether._errors import BadQuantity, DecodeError
from aether.quantity import hex_quantity


@pytest.mark.parametrize(
    "text",
    [
        " 0x1",  # whitespace: int(" 0x1", 16) == 1
        "0x1 ",
        "0x1\n",
        "0x_1",  # an underscore: int("0x_1", 16) == 1
        "0x1_0",
        "-0x1",  # a sign: int("-0x1", 16) == -1
        "+0x1",
        "0x",  # no digits
        "1",  # no prefix: int("1", 16) == 1
        "0X1",  # not the spelling nodes send
        "0xg",
        "",
        "0x" + "1" * 1000,  # unbounded: over 64 digits
        "0x" + "f" * 65,
    ],
)
def test_refuses_what_int_base_16_accepts_or_what_is_no_quantity(text: str) -> None:
    with pytest.raises(BadQuantity) as info:
        hex_quantity(text)
    # Caught by handlers written for int(x, 16) and by those for decode errors.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DecodeError)
    assert info.value.reason == "bad_fields"
    assert len(str(info.value)) < 80  # a 1000-digit value is not echoed back whole


@pytest.mark.parametrize("value", [None, 1, b"0x1", ["0x1"]])
def test_a_non_string_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError):
        hex_quantity(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0x0", 0), ("0x1", 1), ("0x1b4", 0x1B4), ("0xABCdef", 0xABCDEF), ("0x" + "f" * 64, 2**256 - 1),
     ("0x" + "0" * 63 + "7", 7)],
)
def test_reads_a_well_formed_quantity(text: str, expected: int) -> None:
    assert hex_quantity(text) == expected


def test_max_digits_bounds_a_narrower_field() -> None:
    assert hex_quantity("0xffff", max_digits=4) == 0xFFFF
    with pytest.raises(BadQuantity):
        hex_quantity("0x10000", max_digits=4)


def test_no_bare_int_base_16_on_node_data_in_the_runtime() -> None:
    """Node data goes through hex_quantity everywhere: a scan of the runtime packages for
    ``int(x, 16)`` finds it only where the text is ours or was matched by a strict regex first.
    (The devnet is tooling that talks to its own anvil node, not the runtime.)"""
    import ast
    from pathlib import Path

    import aether

    allowed = {
        "quantity.py": "the parser itself, after its regex",
        "keys.py": "the key file's 64 hex characters, matched by a regex first",
        "dex/_pairs.py": "sorting two configured (checksummed) addresses",
        "strategy/_backrun.py": "our own leg's addresses as ABI words",
    }
    root = Path(aether.__file__).parent
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("devnet/") or rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "int"
                    and len(node.args) == 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == 16):
                found.append(f"{rel}:{node.lineno}")
    assert found == []
