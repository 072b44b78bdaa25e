"""Telling systemd how the worker is doing: the sd_notify protocol, over one datagram socket.

Under a `Type=notify` unit systemd sets `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
namespace) and, with `WatchdogSec=`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`. Each message is one
datagram of `KEY=value` lines. Outside systemd every method is a no-op, so callers never check.

A send that fails is logged once and otherwise ignored: losing touch with the service manager
must not stop the jobs (if the watchdog pings stop arriving, systemd acts on that by itself).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger()


class SystemdNotifier:
    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec=_watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        """True when a service manager listens (the process runs under a notify unit)."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between two watchdog pings (half of `WatchdogSec=`), or None when off."""
        if self._address is None or not self._watchdog_usec:
            return None
        return self._watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> None:
        self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def notify(self, *lines: str) -> None:
        if self._address is None or not lines:
            return
        payload = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            # A socket per message, as libsystemd does: a few per minute, and no descriptor
            # held open for job code to inherit.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("systemd.notify_failed", error=f"{type(exc).__name__}: {exc}")


def _socket_address(value: str) -> str:
    # "@name" is Linux's abstract namespace, written with a leading NUL byte in the address.
    return "\0" + value[1:] if value.startswith("@") else value


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):  # meant for another process (we were forked or exec'd)
        return None
    return int(usec)
