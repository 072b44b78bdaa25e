"""What a dashboard serves and how it may be reached."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from producer.errors import CoroqError
from producer.keys import DEFAULT_PREFIX, validate_prefix, validate_queue_name

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# Seconds between two reads of the overview from Redis, at least; pages poll this often.
DEFAULT_REFRESH = 5.0
# The most Redis commands per second the overview may cost, whatever the number of open pages:
# with many queues and workers, it is read less often than `refresh` (docs/dashboard.md).
DEFAULT_REDIS_BUDGET = 5.0
MIN_TOKEN_LENGTH = 16


class SettingsError(ValueError):
    """A setting the dashboard cannot start with; the message names it."""


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    redis_url: str
    prefix: str = DEFAULT_PREFIX
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    read_only: bool = False
    token: str | None = None
    queues: tuple[str, ...] = ()  # only these (all found in Redis when empty)
    refresh: float = DEFAULT_REFRESH
    redis_budget: float = DEFAULT_REDIS_BUDGET  # commands/s the overview may cost

    def __post_init__(self) -> None:
        try:
            validate_prefix(self.prefix)
            for queue in self.queues:
                validate_queue_name(queue)
        except CoroqError as exc:
            raise SettingsError(str(exc)) from None
        if not 0 <= self.port < 65536:
            raise SettingsError(f"--port {self.port}: not a TCP port")
        if not 1.0 <= self.refresh <= 3600:
            raise SettingsError(f"--refresh {self.refresh}: give 1 to 3600 seconds")
        if not 0.1 <= self.redis_budget <= 100_000:
            raise SettingsError(
                f"--redis-budget {self.redis_budget}: give 0.1 to 100000 commands a second"
            )
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise SettingsError(
                f"the token is {len(self.token)} characters long: use at least "
                f"{MIN_TOKEN_LENGTH}, e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe())'`"
            )
        if self.token is None and not is_loopback(self.host):
            raise SettingsError(
                f"--host {self.host} is reachable from other machines: give a token "
                "(--token or COROQ_DASHBOARD_TOKEN) that visitors must present, "
                "or bind to 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach an address (names other than localhost are not
    trusted to be: they may resolve to anything)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
