"""The sd_notify client against a datagram socket the test listens on, as systemd would."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.process.sdnotify import SystemdNotifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_watchdog_and_stopping_arrive_as_systemd_reads_them(listener) -> None:
    sock, path = listener
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready("taking jobs from default")
    assert received(sock) == ["READY=1", "STATUS=taking jobs from default"]
    notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    notifier.status("draining\n3 jobs")
    assert received(sock) == ["STATUS=draining 3 jobs"]  # one line per field, always
    notifier.stopping()
    assert received(sock) == ["STOPPING=1"]


def test_abstract_namespace_addresses_are_supported() -> None:
    name = f"coroq-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_outside_systemd_every_call_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(listener) -> None:
    _, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier.from_environment(env).watchdog_interval() == 15.0
    without_pid = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}
    assert SystemdNotifier.from_environment(without_pid).watchdog_interval() == 2.0


def test_watchdog_meant_for_another_process_or_off_gives_no_interval(listener) -> None:
    _, path = listener
    other = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    assert SystemdNotifier.from_environment(other).watchdog_interval() is None
    off = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "0"}
    assert SystemdNotifier.from_environment(off).watchdog_interval() is None
    no_socket = {"WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier.from_environment(no_socket).watchdog_interval() is None


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with capture_logs() as logs:
        notifier.ready()
        notifier.watchdog()
    assert [entry["event"] for entry in logs] == ["systemd.notify_failed"]
