"""A hostile or broken peer on the hospital network cannot lock the node out or fill its memory.
Each attempt is made against a running node (`renalnode serve`, loopback), and during it a
legitimate sender (dcmtk's echoscu, pynetdicom's C-STORE) gets in within seconds."""
from __future__ import annotations

import socket
import struct
import time

import pytest
import requests
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from deploy.local_services import NODE_AET, LocalNode, echo, free_port, wait_until

SENDER = "MODALITY"
NEGOTIATION_TIMEOUT = 3.0
A_ASSOCIATE_RQ, P_DATA_TF = 0x01, 0x04


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    web_port = free_port()
    process = LocalNode(tmp_path_factory.mktemp("hostile"), free_port(), free_port(), (SENDER,), listener={
        "negotiation_timeout_seconds": NEGOTIATION_TIMEOUT, "max_negotiating": 4, "max_negotiating_per_host": 2,
        "max_associations": 4}, sections={"web": {"port": web_port, "username": "it", "password_env": "TEST_WEB_PW",
                                                  "health_check_seconds": 1}},
        env={"TEST_WEB_PW": "not-used-here"}).start()
    process.web_url = f"http://127.0.0.1:{web_port}"
    wait_until(lambda: _health(process) is not None, 60, what="the node's /healthz")
    yield process
    process.stop()


def _health(node) -> tuple[int, dict] | None:
    try:
        response = requests.get(f"{node.web_url}/healthz", timeout=5)
    except requests.ConnectionError:
        return None
    return response.status_code, response.json()["checks"]


def _resident_mb(node: LocalNode) -> float:
    assert node.process is not None
    for line in open(f"/proc/{node.process.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _legitimate_sender_gets_in(node: LocalNode) -> None:
    start = time.monotonic()
    assert echo(node.port, NODE_AET, SENDER).returncode == 0
    ae = AE(ae_title=SENDER)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AET)
    assert assoc.is_established
    assert assoc.send_c_store(get_testdata_file("CT_small.dcm")).Status == 0x0000
    assoc.release()
    assert time.monotonic() - start < 5


def _connect(host: str, node: LocalNode) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.connect(("127.0.0.1", node.port))
    return sock


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_connections_that_never_negotiate_lock_no_one_out_and_are_dropped(node):
    attacker = [_connect("127.0.0.5", node) for _ in range(8)]
    for sock in attacker:
        sock.sendall(b"\x01")                        # one byte of a PDU header, then nothing
    _legitimate_sender_gets_in(node)
    started = time.monotonic()
    assert all(_closed_by_peer(sock, NEGOTIATION_TIMEOUT + 3) for sock in attacker)
    assert time.monotonic() - started < NEGOTIATION_TIMEOUT + 3
    silent = _connect("127.0.0.6", node)             # nothing at all
    assert _closed_by_peer(silent, NEGOTIATION_TIMEOUT + 3)
    for sock in attacker + [silent]:
        sock.close()


def test_a_pdu_declaring_2_gb_is_refused_before_its_body_is_read(node):
    before = _resident_mb(node)
    sock = _connect("127.0.0.7", node)
    sock.sendall(struct.pack(">BBL", A_ASSOCIATE_RQ, 0, 0x7FFFFFFF))
    sent, chunk = 0, b"\0" * (1 << 20)
    try:
        while sent < 300 * (1 << 20):
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:                                  # the node closed the connection
        pass
    sock.close()
    assert sent < 300 * (1 << 20)
    assert _resident_mb(node) - before < 100
    _legitimate_sender_gets_in(node)


def test_a_large_p_data_inside_an_association_closes_it(node):
    before = _resident_mb(node)
    ae = AE(ae_title=SENDER)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AET, bind_address=("127.0.0.8", 0))
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    raw.sendall(struct.pack(">BBL", P_DATA_TF, 0, 0x7FFFFFFF))
    try:
        for _ in range(300):
            raw.sendall(b"\0" * (1 << 20))
    except OSError:
        pass
    wait_until(lambda: not assoc.is_established, 10, what="the node to end the association")
    assert _resident_mb(node) - before < 100
    _legitimate_sender_gets_in(node)


def test_many_hosts_negotiating_show_as_saturated_until_dropped(node):
    attacker = [_connect(f"127.0.1.{n}", node) for n in range(1, 7)]     # more hosts than the 4 slots
    at_once = [sock for sock in attacker if _closed_by_peer(sock, 0.5)]
    assert len(at_once) == 2                                             # closed on accept
    status, checks = _health(node)
    assert status == 503 and checks["listener"].startswith("saturated: 0 of 4 associations, 4 of 4")
    assert all(_closed_by_peer(sock, NEGOTIATION_TIMEOUT + 3) for sock in attacker if sock not in at_once)
    for sock in attacker:
        sock.close()
    _legitimate_sender_gets_in(node)
    assert _health(node)[1]["listener"] == "ok"
