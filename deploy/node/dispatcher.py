"""The dispatcher: sends each job's result objects to its destinations from the journal's outbox,
by C-STORE (pynetdicom, optionally over DICOM TLS) or STOW-RS (dicomweb-client). One thread sends the due rows one after
another: a failed row is retried later with exponential back-off and the rows after it are still
tried, but a destination slow to answer holds up the others for as long as its attempt takes. A
resend after a crash is harmless because the objects' UIDs are deterministic (the receiver
replaces, not duplicates). Nodes that share a journal claim each row before sending it, so only
one sends it."""
from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pynetdicom import AE, Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import by pynetdicom
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

from deploy.node.config import Destination, DicomDestination, DicomTlsDestination, DicomwebDestination, NodeConfig
from deploy.node.journal import Journal, retry_delay
from deploy.node.metrics import NodeMetrics

log = logging.getLogger("renalnode.node")
# A warning (coerced data elements, elements discarded, ...) still means the object was stored.
STORED = (STATUS_SUCCESS, STATUS_WARNING)


class DispatchError(RuntimeError):
    pass


def _associate(destination: DicomDestination | DicomTlsDestination, calling_ae: str, sop_classes) -> Association:
    ae = AE(ae_title=calling_ae)
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class)
    tls_args = None
    if isinstance(destination, DicomTlsDestination):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(destination.ca))
        if destination.certificate and destination.private_key:
            context.load_cert_chain(str(destination.certificate), str(destination.private_key))
        tls_args = (context, destination.host)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        raise DispatchError(f"association with {destination.ae_title}@{destination.host}:{destination.port} failed")
    return assoc


def _store_scu(destination: DicomDestination | DicomTlsDestination, calling_ae: str,
               datasets: Sequence[pydicom.Dataset]) -> None:
    assoc = _associate(destination, calling_ae, sorted({ds.SOPClassUID for ds in datasets}))
    try:
        accepted = {context.abstract_syntax for context in assoc.accepted_contexts}
        refused = sorted({ds.SOPClassUID.name for ds in datasets if ds.SOPClassUID not in accepted})
        if refused:
            raise DispatchError(f"{destination.ae_title} does not accept {', '.join(refused)}")
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if not status or code_to_category(status.Status) not in STORED:
                code = f"0x{status.Status:04X}" if status else "no response"
                raise DispatchError(f"C-STORE of {ds.SOPClassUID.name} refused: {code}")
    finally:
        assoc.release()


def _c_echo(destination: DicomDestination | DicomTlsDestination, calling_ae: str) -> str:
    assoc = _associate(destination, calling_ae, [Verification])
    status = assoc.send_c_echo()
    assoc.release()
    if not status or status.Status != 0:
        raise DispatchError("C-ECHO failed")
    return f"C-ECHO {destination.ae_title}@{destination.host}:{destination.port}: success"


def _dicomweb(destination: DicomwebDestination) -> DICOMwebClient:
    session = requests.Session()
    if destination.username:
        session.auth = (destination.username, destination.password)
    return DICOMwebClient(url=destination.url, session=session)


def _stow(destination: DicomwebDestination, calling_ae: str, datasets: Sequence[pydicom.Dataset]) -> None:
    try:
        _dicomweb(destination).store_instances(datasets)
    except requests.RequestException as exc:
        raise DispatchError(f"STOW-RS to {destination.url}: {exc}") from None


def _qido(destination: DicomwebDestination, calling_ae: str) -> str:
    try:
        _dicomweb(destination).search_for_studies(limit=1)
    except requests.RequestException as exc:
        raise DispatchError(f"DICOMweb {destination.url}: {exc}") from None
    return f"QIDO-RS {destination.url}: success"


# Each kind of destination (deploy/node/config.py) with how results are sent to it and how it is
# checked: a new kind is one new type there and one entry here.
SENDERS: dict[type, tuple[Callable, Callable]] = {
    DicomDestination: (_store_scu, _c_echo),
    DicomTlsDestination: (_store_scu, _c_echo),
    DicomwebDestination: (_stow, _qido),
}


def echo(destination: Destination, calling_ae: str) -> str:
    """A connectivity check of one destination: C-ECHO, or a DICOMweb QIDO query."""
    return SENDERS[type(destination)][1](destination, calling_ae)


class Dispatcher:
    def __init__(self, config: NodeConfig, journal: Journal, metrics: NodeMetrics):
        self.config, self.journal, self.metrics = config, journal, metrics

    def send(self, destination: Destination, files: list[Path]) -> None:
        datasets = [pydicom.dcmread(f) for f in files]
        SENDERS[type(destination)][0](destination, self.config.listener.ae_title, datasets)

    def dispatch_due(self, now: float | None = None) -> int:
        sent = 0
        for row in self.journal.due_dispatches(now):
            if not self.journal.claim_dispatch(row.id, self.config.node_name, now):
                continue  # another node on the same journal is sending it
            destination = self.config.destinations.get(row.destination)
            files = sorted(Path(row.output).glob("*.dcm"))
            try:
                if destination is None:
                    raise DispatchError(f"destination {row.destination} is no longer configured")
                if not files:
                    raise DispatchError(f"no result objects in {row.output}")
                self.send(destination, files)
            except Exception as exc:  # one row's failure, whatever it is, must not hold up the others
                delay = retry_delay(row.attempts + 1, self.config.retry_base_seconds, self.config.retry_max_seconds)
                self.journal.dispatch_failed(row.id, str(exc), time.time() + delay)
                self.metrics.dispatch_failures.labels(row.destination).inc()
                log.warning("job %d to %s: %s; next try in %.0f s", row.job_id, row.destination, exc, delay)
                continue
            self.journal.dispatched(row.id, f"{len(files)} object(s)")
            self.metrics.dispatches.labels(row.destination).inc()
            sent += 1
            log.info("job %d: %d object(s) sent to %s", row.job_id, len(files), row.destination)
        return sent
