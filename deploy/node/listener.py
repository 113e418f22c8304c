"""The DICOM listener: a pynetdicom SCP answering C-ECHO and C-STORE for every storage SOP class
and transfer syntax. Access control happens at association: calling AE titles (and optionally
hosts) must be allowed, the called AE title must be ours, the number of associations is capped,
and new associations are refused while the spool's disk is nearly full. An instance is answered
with success only once it passed the ingest check (deploy/node/ingest_check.py), its UIDs agree with
what was received before, and it is in the spool and the journal; otherwise it gets a failure status
and nothing of it is kept. Every association goes into the audit
log when it ends (who, from where, how it ended, how many instances into which series), and every
refusal with its reason."""
from __future__ import annotations

import logging
import shutil
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import by pynetdicom
from sqlalchemy import String

from deploy.node.config import ListenerConfig
from deploy.node.connection_guard import ConnectionLimits, GuardedAssociationServer, guarded_server_class
from deploy.node.ingest_check import CANNOT_UNDERSTAND, decode_received, instance_problem
from deploy.node.journal import Journal
from deploy.node.journal.receiving import IdentifierConflict
from deploy.node.journal.schema import series
from deploy.node.metrics import NodeMetrics
from deploy.node.spool import Spool

log = logging.getLogger("renalnode.node")
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
# A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source, reason
REJECT_HOST = (0x01, 0x01, 0x03)         # permanent, service user, calling AE (here: its host) not recognised
REJECT_DISK_FULL = REJECT_LIMIT = (0x02, 0x03, 0x02)   # transient, service provider (presentation),
                                                      # local limit exceeded
FACTS = {"modality": "Modality", "body_part": "BodyPartExamined", "series_description": "SeriesDescription",
         "study_description": "StudyDescription"}
# Longer header values are cut to their journal column's length.
FACT_LENGTHS = {name: cast(String, series.c[name].type).length for name in FACTS}


@dataclass
class _Association:
    peer: str                                                 # calling AE title @ host
    stored: Counter = field(default_factory=Counter)          # series UID -> instances stored


class Listener:
    def __init__(self, config: ListenerConfig, spool: Spool, journal: Journal, metrics: NodeMetrics):
        self.config, self.spool, self.journal, self.metrics = config, spool, journal, metrics
        self.server: GuardedAssociationServer | None = None
        self._open: dict[int, _Association] = {}  # id(association) -> what it did so far
        self._lock = threading.Lock()

    def _ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        ae.require_calling_aet = list(self.config.allowed_calling_aets)
        ae.require_called_aet = True
        # pynetdicom counts every association thread, negotiating and ending ones too. The node caps
        # negotiating connections (connection_guard.py) and established associations (_on_requested)
        # itself; pynetdicom's limit only bounds threads, with room for those still ending.
        ae.maximum_associations = 4 * (self.config.max_associations + self.config.max_negotiating)
        return ae

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca) if tls.ca else None)
        context.load_cert_chain(str(tls.certificate), str(tls.private_key))
        if tls.ca:
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def start(self) -> None:
        handlers: list = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_ECHO, lambda event: SUCCESS),
                    (evt.EVT_ESTABLISHED, self._on_established), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_C_STORE, self._on_store), (evt.EVT_RELEASED, self._on_closed),
                    (evt.EVT_ABORTED, self._on_closed), (evt.EVT_CONN_CLOSE, self._on_closed)]
        limits = ConnectionLimits(self.config.negotiation_timeout_seconds, self.config.max_negotiating,
                                  self.config.max_negotiating_per_host, self.config.max_pdu_bytes)
        server = cast(GuardedAssociationServer, self._ae().make_server(
            (self.config.host, self.config.port), evt_handlers=handlers, ssl_context=self._ssl_context(),
            server_class=guarded_server_class(limits)))
        threading.Thread(target=server.serve_forever, name=f"AcceptorServer@{self.config.port}", daemon=True).start()
        self.server = server
        log.info("listening as %s on %s:%d", self.config.ae_title, self.config.host, self.config.port)

    def is_listening(self) -> bool:
        """The server socket is open and its accepting thread runs (checked without connecting: a
        probe's connection would hold an association slot until pynetdicom's ACSE timeout)."""
        server = self.server
        return server is not None and server.socket is not None and server.socket.fileno() != -1 and any(
            thread.name.startswith("AcceptorServer@") and thread.is_alive() for thread in threading.enumerate())

    def saturation(self) -> str | None:
        """Why no new sender could get in now (every negotiating or association slot taken), or None."""
        server = self.server
        with self._lock:
            established = len(self._open)
        negotiating = server.negotiating_count() if server else 0
        if established >= self.config.max_associations or negotiating >= self.config.max_negotiating:
            return (f"saturated: {established} of {self.config.max_associations} associations, "
                    f"{negotiating} of {self.config.max_negotiating} connections negotiating")
        return None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    @staticmethod
    def _peer(event) -> str:
        return f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"

    def _refuse(self, event, reason: str, rejection: tuple[int, int, int]) -> None:
        event.assoc.acse.send_reject(*rejection)
        self.metrics.associations.labels("refused").inc()
        self.journal.audit("association.refused", detail=f"{self._peer(event)}: {reason}")

    def _on_requested(self, event) -> None:
        address = event.assoc.requestor.address
        with self._lock:
            established = len(self._open)
        if established >= self.config.max_associations:
            log.warning("association from %s refused: %d associations open", address, established)
            self._refuse(event, f"{established} associations open, the maximum", REJECT_LIMIT)
            return
        if self.config.allowed_hosts and address not in self.config.allowed_hosts:
            log.warning("association from host %s refused: not in allowed_hosts", address)
            self._refuse(event, "host not in allowed_hosts", REJECT_HOST)
            return
        free_mb = shutil.disk_usage(self.spool.root).free / 2 ** 20
        if free_mb < self.config.min_free_disk_mb:
            log.error("association refused: %.0f MB free on the spool disk, under %d MB", free_mb,
                      self.config.min_free_disk_mb)
            self._refuse(event, f"{free_mb:.0f} MB free on the spool disk", REJECT_DISK_FULL)

    def _on_rejected(self, event) -> None:
        """pynetdicom's own refusals: calling or called AE title not allowed, too many associations."""
        self.metrics.associations.labels("refused").inc()
        self.journal.audit("association.refused", detail=f"{self._peer(event)}: AE title or association limit")

    def _negotiation_over(self, event) -> None:
        if self.server is not None:
            self.server.negotiated(event.assoc.dul.socket.socket)

    def _on_established(self, event) -> None:
        self._negotiation_over(event)
        self.metrics.associations.labels("accepted").inc()
        with self._lock:
            self._open[id(event.assoc)] = _Association(self._peer(event))

    def _on_store(self, event) -> int:
        transfer_syntax = event.context.transfer_syntax
        try:
            # Parsed once, pixel data untouched; the file written is the bytes as received.
            header = decode_received(event.request.DataSet, transfer_syntax)
            study_uid, series_uid = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
            sop_uid = str(event.request.AffectedSOPInstanceUID)
        except Exception as exc:  # whatever the sender got wrong, tell it, and keep serving
            log.warning("instance refused: cannot read its identifying attributes (%s)", type(exc).__name__)
            return CANNOT_UNDERSTAND
        calling = event.assoc.requestor.ae_title
        problem = instance_problem(header, transfer_syntax)
        if problem:
            return self._refuse_instance(event, series_uid, *problem)
        try:
            path = self.spool.store(study_uid, series_uid, sop_uid, event.encoded_dataset())
        except ValueError as exc:   # UIDs that are not UIDs
            return self._refuse_instance(event, "", CANNOT_UNDERSTAND, str(exc))
        except OSError as exc:
            log.error("instance not stored: %s", exc)
            return OUT_OF_RESOURCES
        facts = {name: str(header.get(keyword, "") or "")[:FACT_LENGTHS[name]] for name, keyword in FACTS.items()}
        try:
            new_series = self.journal.record_instance(sop_uid, series_uid, study_uid, str(path), calling, facts)
        except IdentifierConflict as exc:
            path.unlink(missing_ok=True)   # nothing of a refused instance is kept
            return self._refuse_instance(event, series_uid, CANNOT_UNDERSTAND, str(exc))
        self.metrics.instances.inc()
        if new_series:
            self.metrics.series.inc()
        # The connection may close (on pynetdicom's network thread) while this instance is written: the
        # lock, held through the journal call, makes the close undo exactly the opens it saw.
        with self._lock:
            association = self._open.get(id(event.assoc))
            if association is not None:
                if series_uid not in association.stored:
                    self.journal.association_opened(series_uid)
                association.stored[series_uid] += 1
        return SUCCESS

    def _refuse_instance(self, event, series_uid: str, status: int, reason: str) -> int:
        """A failure status for the sender, with the reason in the log and the audit trail."""
        log.warning("instance refused (0x%04X): %s", status, reason)
        self.journal.audit("instance.refused", series_uid, detail=f"{self._peer(event)}: {reason}")
        return status

    def _on_closed(self, event) -> None:
        """Released, aborted or connection closed: whichever comes first ends the association and
        writes its audit rows (so an association cut by a crash has none; its instances are in the
        journal all the same)."""
        self._negotiation_over(event)
        with self._lock:
            association = self._open.pop(id(event.assoc), None)
        if association is None:
            return
        if association.stored:
            self.journal.association_closed(set(association.stored))
        how = {"EVT_RELEASED": "released", "EVT_ABORTED": "aborted"}.get(event.event.name, "closed")
        for series_uid, count in association.stored.items():
            self.journal.audit("instances.stored", series_uid, detail=f"{count} instance(s) from {association.peer}")
        self.journal.audit(f"association.{how}", detail=f"{association.peer}: {sum(association.stored.values())} "
                                                        f"instance(s) into {len(association.stored)} series")
