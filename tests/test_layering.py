"""The import rules of the package, checked on the source (the AST of every module).

Why each rule holds:
- ``aether/chain/`` talks to the node and nothing else: it does not import the
  metrics module (a subscription reports through a protocol the caller fills).
- ``aether.devnet`` (the local chain, traffic, a test builder) sits at the top of
  the graph: nothing in the runtime imports it, only the CLI's ``devnet`` dispatch.
- In shadow mode the code that can send a bundle is not even loaded: the shadow
  tree and what it shares with live never import ``aether.submit``.
- Risk does not reach into the chain layer's private modules; fee math is the pure
  ``aether.fees``; ``aether.fees`` and ``aether.quantity`` import nothing of aether
  but the error tree.
- The submit package uses the actors' public names only.
- ``aether.run`` imports ``supervisors``; ``supervisors`` never imports back
  ``aether.run`` or ``aether.cli`` (one-way).

Imports under ``if TYPE_CHECKING:`` and inside functions count too: the rules are
about what a module may depend on, not only what it loads first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # ``from . import x`` / ``from aether import devnet`` name submodules too.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def _hits(paths: list[Path], forbidden: str) -> list[str]:
    return [
        f"{p.relative_to(ROOT)} imports {m}"
        for p in paths
        for m in sorted(imports_of(p))
        if m == forbidden or m.startswith(forbidden + ".")
    ]


def test_the_resolver_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    """The rules below are only as good as this: a relative import, one inside a function
    and one under TYPE_CHECKING are all found, with their absolute names."""
    src = ROOT / "aether" / "chain" / "_ws.py"
    got = imports_of(src)
    assert "aether._errors" in got  # from .._errors import ...
    assert "aether.quantity" in imports_of(ROOT / "aether" / "chain" / "_tx.py")  # from ..quantity import ...
    cli = imports_of(ROOT / "aether" / "cli.py")
    assert "aether.devnet" in cli  # a function-level ``from .devnet import devnet_main``
    risk = imports_of(ROOT / "aether" / "actors" / "_risk.py")
    assert "aether.inclusion" in risk  # under ``if TYPE_CHECKING:``


def test_chain_does_not_import_metrics() -> None:
    assert _hits(_files("aether/chain"), "aether.metrics") == []


def test_nothing_in_the_runtime_imports_the_devnet() -> None:
    allowed = {ROOT / "aether" / "cli.py"}  # the ``aether devnet ...`` dispatch
    runtime = [p for p in _files("aether", "supervisors") if "devnet" not in p.relative_to(ROOT).parts[:2]]
    assert _hits([p for p in runtime if p not in allowed], "aether.devnet") == []


@pytest.mark.parametrize("module", ["supervisors/shadow.py", "supervisors/_tree.py", "supervisors/_supervise.py",
                                    "supervisors/__init__.py"])
def test_the_shadow_path_never_imports_submit(module: str) -> None:
    assert _hits([ROOT / module], "aether.submit") == []
    # ... nor anything in aether.actors (the shared part of the tree) does.
    assert _hits(_files("aether/actors"), "aether.submit") == []


def test_risk_uses_no_private_chain_module() -> None:
    hits = [h for p in _files("aether/risk") for h in _hits([p], "aether.chain") if "aether.chain._" in h]
    assert hits == []


@pytest.mark.parametrize("module", ["aether/fees.py", "aether/quantity.py"])
def test_pure_modules_import_only_the_error_tree(module: str) -> None:
    ours = {m for m in imports_of(ROOT / module) if m == "aether" or m.startswith("aether.")}
    assert ours <= {"aether._errors", "aether._errors.BadQuantity"}, ours


def test_submit_uses_public_actor_names_only() -> None:
    hits = [h for h in _hits(_files("aether/submit"), "aether.actors") if "aether.actors._" in h]
    assert hits == []


def test_supervisors_do_not_import_back_into_run_or_cli() -> None:
    assert _hits(_files("supervisors"), "aether.run") == []
    assert _hits(_files("supervisors"), "aether.cli") == []
    # ... and in the runtime only the run module reaches up into supervisors (the devnet
    # sits above everything and may use them).
    users = {p.relative_to(ROOT).as_posix() for p in _files("aether") if _hits([p], "supervisors")}
    assert {u for u in users if not u.startswith("aether/devnet/")} <= {"aether/run.py"}, users
