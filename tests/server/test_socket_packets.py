"""The server's msgpack socket.io packets as the web pages' parser reads them.

The pages decode with socket.io-msgpack-parser (web/node_modules, installed by `npm ci`): these
tests encode packets of every type with the server's encoder and decode them with that parser,
run by Node.js, so a packet the browser would reject ("parse error", then a reconnect instead
of obeying the server) fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import msgpack
import pytest
from socketio import packet

from careline.server.socket_server import StrictMsgPackPacket

WEB = Path(__file__).resolve().parents[2] / "web"
PARSER = WEB / "node_modules" / "socket.io-msgpack-parser"

DECODE = """
const { Decoder } = require(process.argv[1]);
const out = [];
for (const hex of JSON.parse(require("fs").readFileSync(0, "utf8"))) {
  const decoder = new Decoder();
  try {
    decoder.on("decoded", (p) =>
      out.push({ ok: true, type: p.type, nsp: p.nsp, data: p.data ?? null, id: p.id ?? null }));
    decoder.add(Buffer.from(hex, "hex"));
  } catch (err) {
    out.push({ ok: false, error: String(err.message) });
  }
}
process.stdout.write(JSON.stringify(out));
"""


def packets() -> list[StrictMsgPackPacket]:
    return [
        StrictMsgPackPacket(packet.CONNECT, {"sid": "abc"}, namespace="/hotline"),
        StrictMsgPackPacket(packet.DISCONNECT, namespace="/hotline"),
        StrictMsgPackPacket(
            packet.EVENT, ["hotline.replaced", {"reason": "x"}], namespace="/hotline"
        ),
        StrictMsgPackPacket(packet.ACK, [{"ok": True}], namespace="/threads", id=7),
        StrictMsgPackPacket(
            packet.CONNECT_ERROR, {"message": "no", "data": {"code": "auth"}}, namespace="/visit"
        ),
    ]


def test_a_disconnect_carries_no_data_key() -> None:
    encoded = StrictMsgPackPacket(packet.DISCONNECT, namespace="/hotline").encode()
    assert msgpack.unpackb(encoded) == {"type": packet.DISCONNECT, "nsp": "/hotline"}


@pytest.mark.skipif(
    shutil.which("node") is None or not PARSER.exists(),
    reason="needs node and web/node_modules (scripts/test runs npm ci)",
)
def test_the_pages_parser_accepts_every_packet_type() -> None:
    hexes = [p.encode().hex() for p in packets()]
    done = subprocess.run(
        ["node", "-e", DECODE, str(PARSER)],
        input=json.dumps(hexes),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    decoded = json.loads(done.stdout)
    assert [d["ok"] for d in decoded] == [True] * len(hexes), decoded
    assert [d["type"] for d in decoded] == [p.packet_type for p in packets()]
    assert decoded[1]["data"] is None
    assert decoded[3]["id"] == 7
