"""The feeder: a separate process that plays a node's ``newPendingTransactions`` stream.

``python -m bench._feeder FRAMES_FILE --port-file F [--rate R]`` binds
127.0.0.1 on a free port, writes the port to ``F``, and for every connection:
completes the WebSocket handshake (wsproto), answers the ``eth_subscribe`` with
the generated stream's subscription id, then sends the pre-framed notifications.
With ``--rate 0`` it writes as fast as the client reads (TCP back-pressure is
the only brake: server frames are unmasked, so the bytes are built once and
written in 256 KiB chunks); with ``--rate R`` it paces R frames a second in
10 ms batches (the soak). Each connection first reads one text message from the
client (the ``eth_subscribe``), then sends ``--count`` frames, cycling the file;
a ``newHeads`` subscription instead gets ``--head`` and then one head after
another every ``--head-every`` seconds, as a node would send them.
"""

from __future__ import annotations

import argparse
import socket
import struct
import threading
import time
from pathlib import Path

import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from ._gen import SUB_ID


def ws_frame(payload: bytes) -> bytes:
    """One unmasked FIN text frame (server to client)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = bytes((0x81, 126)) + struct.pack("!H", n)
    else:
        head = bytes((0x81, 127)) + struct.pack("!Q", n)
    return head + payload


def read_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("!I", data, i)
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def write_frames(path: Path, frames: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack("!I", len(f)) + f for f in frames))


def _serve(conn: socket.socket, framed: list[bytes], rate: float, count: int, head: dict[str, str],
           head_every: float) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    want: int | None = None
    try:
        while want is None:
            data = conn.recv(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    conn.sendall(ws.send(AcceptConnection()))
                elif isinstance(event, TextMessage):
                    req = orjson.loads(event.data)
                    want = count or len(framed)
                    reply = {"jsonrpc": "2.0", "id": req["id"], "result": SUB_ID}
                    conn.sendall(ws.send(TextMessage(orjson.dumps(reply).decode())))
                    if req["params"][0] == "newHeads":
                        _heads(conn, ws, head, head_every)
                        return
                elif isinstance(event, CloseConnection):
                    return
        if rate <= 0:
            _blast(conn, framed, want)
        else:
            _paced(conn, framed, want, rate)
        # Keep the connection open (a closed socket would be a reconnect) until the client
        # closes; answer its close frame so that it does not wait for one.
        while data := conn.recv(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, CloseConnection):
                    conn.sendall(ws.send(event.response()))
                    return
    except OSError:
        return
    finally:
        conn.close()


def _heads(conn: socket.socket, ws: WSConnection, first: dict[str, str], every: float) -> None:
    """A ``newHeads`` subscription: the first head at once, then the next one every ``every`` seconds."""
    number = int(first["number"], 16)
    parent = first["parentHash"]
    timestamp = int(first["timestamp"], 16)
    while True:
        head = {**first, "number": hex(number), "hash": "0x" + f"{number:064x}", "parentHash": parent,
                "timestamp": hex(timestamp)}
        note = {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": SUB_ID, "result": head}}
        conn.sendall(ws.send(TextMessage(orjson.dumps(note).decode())))
        parent = head["hash"]
        number += 1
        timestamp += 12
        time.sleep(every)


def _blast(conn: socket.socket, framed: list[bytes], want: int) -> None:
    blob = b"".join(framed)
    chunk = 256 * 1024
    full, rest = divmod(want, len(framed))
    for _ in range(full):
        view = memoryview(blob)
        for i in range(0, len(view), chunk):
            conn.sendall(view[i : i + chunk])
    if rest:
        conn.sendall(b"".join(framed[:rest]))


def _paced(conn: socket.socket, framed: list[bytes], want: int, rate: float) -> None:
    start = time.monotonic()
    sent = 0
    n = len(framed)
    while sent < want:
        due = min(want, int((time.monotonic() - start) * rate) + 1)
        if due > sent:
            conn.sendall(b"".join(framed[i % n] for i in range(sent, due)))
            sent = due
        time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("frames_file", type=Path)
    ap.add_argument("--port-file", type=Path, required=True)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--count", type=int, default=0, help="frames per connection, cycling the file (0: one pass)")
    ap.add_argument("--head", default="{}", help="the first head (JSON) for newHeads subscriptions")
    ap.add_argument("--head-every", type=float, default=1.0, help="seconds between heads")
    args = ap.parse_args()
    framed = [ws_frame(f) for f in read_frames(args.frames_file)]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(srv.getsockname()[1]))
    tmp.rename(args.port_file)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(conn, framed, args.rate, args.count, orjson.loads(args.head),
                                              args.head_every), daemon=True).start()


if __name__ == "__main__":
    main()
