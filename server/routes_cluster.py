"""REST for operators: the nodes of the deployment, as the registry knows them (admins only)."""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from careline.server.app_keys import CLUSTER, STORAGE
from careline.server.http_edge import require_principal
from careline.server.storage.redis_storage import RedisStorage
from careline.signaling.errors import Forbidden
from careline.signaling.identity import Role
from careline.signaling.node_registry import NodeInfo

routes = web.RouteTableDef()


class NodesReply(msgspec.Struct, frozen=True):
    """`GET /api/cluster/nodes`: this node's id and every live node (empty on SQLite)."""

    clustered: bool
    node_id: str | None
    nodes: list[NodeInfo]


@routes.get("/api/cluster/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    """Live nodes with their URL, load and lease, read from the registry now."""
    principal = await require_principal(request)
    if principal.role is not Role.ADMIN:
        raise Forbidden("only admins list the nodes")
    storage = request.app[STORAGE]
    node = request.app.get(CLUSTER)
    if node is None or not isinstance(storage, RedisStorage):
        reply = NodesReply(clustered=False, node_id=None, nodes=[])
    else:
        live = await storage.nodes.live(time.time())
        reply = NodesReply(clustered=True, node_id=node.node_id, nodes=list(live))
    return web.Response(body=msgspec.json.encode(reply), content_type="application/json")
