"""Finding and running the anvil node that ships inside the npm packages.

anvil is started with ``--no-mining`` (blocks are produced on demand with
``evm_mine``, so the devnet's miner loop and the local builder decide when a
block happens) and ``--order fifo`` (transactions are mined in arrival order,
which is what makes a backrun sent after its victim land after it; the default
``fees`` order would let a higher tip jump ahead).

Two lifetimes are offered: :func:`run_anvil`, an async
context manager for trio code, and :class:`AnvilProcess`, a synchronous handle
for a pytest session fixture that lives outside any trio run.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import attrs
import httpx
import trio

from .._errors import ConfigError, NodeUnreachable

__all__ = [
    "AnvilEndpoint",
    "AnvilProcess",
    "anvil_binary",
    "anvil_command",
    "find_in_node_modules",
    "free_port",
    "run_anvil",
]

_READY_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 5.0
_POLL_S = 0.02


def _platform_package() -> str:
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if system is None or arch is None:
        raise ConfigError(
            f"anvil: no packaged binary for {sys.platform}/{machine}; "
            "set AETHER_ANVIL_BIN to the path of an anvil executable"
        )
    return f"anvil-{system}-{arch}"


def anvil_binary() -> Path:
    """Return the anvil executable to run.

    ``AETHER_ANVIL_BIN`` wins; otherwise the platform package
    (``node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil``) is looked for in
    every directory from this package and from the current directory upwards.

    Raises:
        ConfigError: the override does not point at a file, or no package is
            installed; the message says what to run.
    """
    override = os.environ.get("AETHER_ANVIL_BIN", "").strip()
    if override:
        path = Path(override)
        if not path.is_file():
            raise ConfigError(f"AETHER_ANVIL_BIN={override!r}: no such file")
        return path
    package = _platform_package()
    found = find_in_node_modules(f"@foundry-rs/{package}/bin/anvil")
    if found is not None:
        return found
    raise ConfigError(
        f"anvil: node_modules/@foundry-rs/{package} not found above {Path.cwd()}; "
        "run `npm ci --ignore-scripts` in the aether checkout (or set AETHER_ANVIL_BIN)"
    )


def find_in_node_modules(rel: str) -> Path | None:
    """``node_modules/<rel>`` in the nearest directory above this package or the CWD."""
    seen: set[Path] = set()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if d in seen:
                continue
            seen.add(d)
            candidate = d / "node_modules" / rel
            if candidate.is_file():
                return candidate
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_command(port: int, *, chain_id: int = 31337, extra_args: Sequence[str] = ()) -> list[str]:
    """The argv that starts anvil on loopback with on-demand, arrival-ordered mining."""
    return [
        str(anvil_binary()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--no-mining",
        "--order",
        "fifo",
        *(() if os.environ.get("AETHER_ANVIL_VERBOSE") else ("--silent",)),
        *extra_args,
    ]


@attrs.frozen
class AnvilEndpoint:
    """Where a running anvil listens."""

    port: int
    chain_id: int

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


_CHAIN_ID_BODY = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'


def _answers(client: httpx.Client, url: str, chain_id: int) -> bool:
    try:
        resp = client.post(url, content=_CHAIN_ID_BODY, headers={"content-type": "application/json"})
        return resp.status_code == 200 and int(resp.json()["result"], 16) == chain_id
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False


async def _answers_async(client: httpx.AsyncClient, url: str, chain_id: int) -> bool:
    try:
        resp = await client.post(url, content=_CHAIN_ID_BODY, headers={"content-type": "application/json"})
        return resp.status_code == 200 and int(resp.json()["result"], 16) == chain_id
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False


@contextlib.asynccontextmanager
async def run_anvil(
    *,
    port: int = 0,
    chain_id: int = 31337,
    extra_args: Sequence[str] = (),
    log_path: Path | None = None,
) -> AsyncIterator[AnvilEndpoint]:
    """Run anvil for the duration of the block.

    Args:
        port: TCP port on 127.0.0.1; 0 picks a free one (and retries with another
            if anvil loses the race for it).
        chain_id: the chain id anvil reports; readiness is checked against it.
        extra_args: appended to anvil's argv.
        log_path: file that receives anvil's output (default: discarded); set
            ``AETHER_ANVIL_VERBOSE=1`` to make anvil log every request there.

    Yields:
        The endpoint, once ``eth_chainId`` answers.

    Raises:
        NodeUnreachable: anvil exited before answering, or did not answer in time.
    """
    attempts = 3 if port == 0 else 1
    last_error: Exception | None = None
    for _ in range(attempts):
        chosen = port or free_port()
        err_file = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115
        try:
            proc = await trio.lowlevel.open_process(
                anvil_command(chosen, chain_id=chain_id, extra_args=extra_args),
                stdin=subprocess.DEVNULL,
                stdout=err_file if err_file is not None else subprocess.DEVNULL,
                stderr=err_file if err_file is not None else subprocess.DEVNULL,
            )
        finally:
            if err_file is not None:
                err_file.close()
        try:
            endpoint = AnvilEndpoint(port=chosen, chain_id=chain_id)
            ready = False
            async with httpx.AsyncClient(timeout=1.0) as client:
                with trio.move_on_after(_READY_TIMEOUT_S):
                    while proc.returncode is None and proc.poll() is None:
                        if await _answers_async(client, endpoint.rpc_url, chain_id):
                            ready = True
                            break
                        await trio.sleep(_POLL_S)
            if not ready:
                last_error = NodeUnreachable(
                    f"anvil on port {chosen} did not become ready "
                    f"(exit code {proc.returncode!r}, waited up to {_READY_TIMEOUT_S:.0f} s)"
                )
                continue
            yield endpoint
            return
        finally:
            with trio.CancelScope(shield=True):
                await _stop_async(proc)
    assert last_error is not None
    raise last_error


async def _stop_async(proc: trio.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(_STOP_TIMEOUT_S):
        await proc.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


class AnvilProcess:
    """A synchronous anvil handle, for code that runs outside trio (pytest session fixtures).

    Example::

        node = AnvilProcess()
        node.start()
        try:
            ...  # node.rpc_url, node.ws_url
        finally:
            node.stop()
    """

    def __init__(self, *, port: int = 0, chain_id: int = 31337, extra_args: Sequence[str] = ()) -> None:
        self._requested_port = port
        self.chain_id = chain_id
        self.extra_args = tuple(extra_args)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return self.endpoint.rpc_url

    @property
    def ws_url(self) -> str:
        return self.endpoint.ws_url

    @property
    def endpoint(self) -> AnvilEndpoint:
        return AnvilEndpoint(port=self.port, chain_id=self.chain_id)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> AnvilEndpoint:
        """Start anvil and block until it answers ``eth_chainId``.

        Raises:
            NodeUnreachable: it never answered (the process is killed first).
        """
        if self._proc is not None:
            raise RuntimeError("AnvilProcess.start: already started")
        attempts = 3 if self._requested_port == 0 else 1
        for _ in range(attempts):
            self.port = self._requested_port or free_port()
            proc = subprocess.Popen(
                anvil_command(self.port, chain_id=self.chain_id, extra_args=self.extra_args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + _READY_TIMEOUT_S
            with httpx.Client(timeout=1.0) as client:
                while proc.poll() is None and time.monotonic() < deadline:
                    if _answers(client, self.rpc_url, self.chain_id):
                        self._proc = proc
                        return self.endpoint
                    time.sleep(_POLL_S)  # readiness of an external process, bounded by the deadline
            _stop_sync(proc)
        raise NodeUnreachable(f"anvil did not become ready on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        """Terminate anvil (kill after a timeout). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_sync(proc)


def _stop_sync(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
