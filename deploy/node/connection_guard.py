"""No peer can hold the listener: limits applied below pynetdicom, on the connections themselves.

- A connection that has not completed association negotiation is a *negotiating* connection. At most
  `max_negotiating` exist at once and `max_negotiating_per_host` from one address; more are closed
  on accept. Each is closed when it has not become an association `negotiation_timeout_seconds`
  after it was accepted, however slowly it trickles bytes. Negotiating connections therefore never
  take the association slots of real senders (those are counted among established associations).
- Every PDU's declared length is checked when its 6-byte header has arrived, before its body is
  read: a PDU longer than `max_pdu_bytes` closes the connection, so a header declaring 2 GB costs
  no memory. This holds before and after association alike.

`GuardedAssociationServer` is pynetdicom's threaded server with these checks (pynetdicom's
`AE.make_server` takes it as `server_class`).
"""
from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import cast

from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer


@dataclass(frozen=True)
class ConnectionLimits:
    negotiation_timeout_seconds: float = 10.0
    max_negotiating: int = 32
    max_negotiating_per_host: int = 8
    max_pdu_bytes: int = 1024 * 1024


class PduTooLong(OSError):
    pass


class PduLimitedSocket(AssociationSocket):
    """pynetdicom's association socket, refusing to read the body of a PDU longer than the limit."""
    max_pdu_bytes = ConnectionLimits.max_pdu_bytes

    def recv(self, nr_bytes: int) -> bytearray:
        # pynetdicom's DUL reads a PDU as recv(6) for its header, then recv(length) for its body: the
        # body's read is where a declared length is first known, and nothing of the body is read yet.
        if nr_bytes > self.max_pdu_bytes:
            raise PduTooLong(f"a PDU declaring {nr_bytes} bytes, more than the {self.max_pdu_bytes} allowed")
        return super().recv(nr_bytes)


class GuardedRequestHandler(RequestHandler):
    """pynetdicom's handler of one connection, whose association socket refuses long PDUs."""

    def _create_association(self):
        assoc = super()._create_association()
        # pynetdicom made the socket (and queued its connection event); only its reads change.
        assert assoc.dul.socket is not None
        assoc.dul.socket.__class__ = cast(GuardedAssociationServer, self.server).socket_class
        return assoc


class GuardedAssociationServer(ThreadedAssociationServer):
    limits = ConnectionLimits()                          # set per node by `guarded_server_class`
    socket_class: type[PduLimitedSocket] = PduLimitedSocket

    def __init__(self, ae, address, ae_title, contexts, ssl_context=None, evt_handlers=None,
                 request_handler=GuardedRequestHandler):
        self._negotiating: dict[int, tuple[str, float, socket.socket]] = {}   # id(socket) -> host, since, socket
        self._negotiating_lock = threading.Lock()
        self.refused_connections = 0
        super().__init__(ae, address, ae_title, contexts, ssl_context, evt_handlers, request_handler)
        self._watchdog = threading.Thread(target=self._close_slow_negotiations, name="negotiation-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def shutdown(self) -> None:
        """Stop serving and close every connection (pynetdicom's own shutdown also forgets the server
        in an AE list that only `AE.start_server` fills, and fails for a server from `make_server`)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()

    def verify_request(self, request, client_address) -> bool:
        host = client_address[0]
        with self._negotiating_lock:
            hosts = Counter(h for h, _, _ in self._negotiating.values())
            if len(self._negotiating) >= self.limits.max_negotiating or \
                    hosts[host] >= self.limits.max_negotiating_per_host:
                self.refused_connections += 1
                return False
            self._negotiating[id(request)] = (host, time.monotonic(), request)
        return True

    def negotiated(self, sock) -> None:
        """The connection became an association, or ended: it no longer counts as negotiating."""
        with self._negotiating_lock:
            self._negotiating.pop(id(sock), None)

    def negotiating_count(self) -> int:
        with self._negotiating_lock:
            return len(self._negotiating)

    def _close_slow_negotiations(self) -> None:
        while True:
            time.sleep(min(1.0, self.limits.negotiation_timeout_seconds / 4))
            deadline = time.monotonic() - self.limits.negotiation_timeout_seconds
            with self._negotiating_lock:
                late = [(key, sock) for key, (_, since, sock) in self._negotiating.items() if since < deadline]
                for key, _ in late:
                    del self._negotiating[key]
            for _, sock in late:
                try:   # pynetdicom's read then fails, and its association thread ends
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def guarded_server_class(limits: ConnectionLimits) -> type[GuardedAssociationServer]:
    socket_class = type("NodeAssociationSocket", (PduLimitedSocket,), {"max_pdu_bytes": limits.max_pdu_bytes})
    return type("NodeAssociationServer", (GuardedAssociationServer,), {"limits": limits, "socket_class": socket_class})
