"""The default socket.io namespace "/": connection-level events every client may use."""

from __future__ import annotations

import time
from collections.abc import Callable

from careline.signaling.identity import Authenticator, Principal
from careline.signaling.observer import SignalingObserver
from careline.signaling.schemas import PingReply, PingRequest, WhoAmI
from careline.signaling.socket_edge import EdgeNamespace, Route

NAMESPACE = "/"


class SessionNamespace(EdgeNamespace):
    """`session.whoami` and `session.ping`; later steps add their own namespaces beside it."""

    def __init__(
        self,
        authenticator: Authenticator,
        observer: SignalingObserver,
        clock: Callable[[], float] = time.time,
        expiry_grace: float = 0.0,
    ) -> None:
        super().__init__(NAMESPACE, authenticator, observer, clock, expiry_grace)
        self.routes["session.whoami"] = Route(None, self._whoami)
        self.routes["session.ping"] = Route(PingRequest, self._ping)

    async def _whoami(self, sid: str, principal: Principal, _: None) -> WhoAmI:
        return WhoAmI(
            sub=principal.sub,
            role=principal.role,
            expires_at=principal.expires_at,
            visit_id=principal.visit_id,
            thread_id=principal.thread_id,
        )

    async def _ping(self, sid: str, principal: Principal, request: PingRequest) -> PingReply:
        return PingReply(client_time=request.client_time, server_time=self._clock())
