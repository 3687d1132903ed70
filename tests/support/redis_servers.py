"""Real Redis servers started by the tests on free loopback ports: a 3-master Redis Cluster, and a
Sentinel-managed primary with a replica and three sentinels. Debian's redis-server and redis-cli
(deploy/test.sh installs them when missing); a sentinel is `redis-sentinel`, or `redis-server
--sentinel` (the same program) when that package is not installed. Every server is stopped by the
code that started it; nothing touches the shared Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis as sync_redis


class ServersUnavailable(RuntimeError):
    """The Redis programs are missing: the tests that need them are skipped with this message."""


def _bin(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServersUnavailable(
            f"{name} is not installed (Debian: apt-get install -y redis-server redis-tools; deploy/test.sh does it)"
        )
    return path


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, bus: bool = False) -> list[int]:
    """`count` free loopback ports; with bus=True each one's cluster bus port (+10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in ports or (bus and (port + 10000 > 65535 or not _port_free(port + 10000))):
            continue
        ports.append(port)
    return ports


def _wait(check: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (sync_redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout}s (last error: {last!r})")


def _cluster_ok(info: object) -> bool:
    if isinstance(info, dict):
        return str(info.get("cluster_state")) == "ok"
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


class _Servers:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        home = self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        log = home / "server.log"
        proc = subprocess.Popen(args, cwd=home, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def _server(self, name: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
        return self._start(
            name,
            [
                _bin("redis-server"),
                "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--dir", str(self.workdir / name), *extra,
            ],
        )  # fmt: skip

    def logs(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.procs)

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class LocalCluster(_Servers):
    """Three masters, no replicas: `redis-server --cluster-enabled yes` x3 + `redis-cli --cluster create`."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.ports = free_ports(3, bus=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> LocalCluster:
        cli = _bin("redis-cli")
        try:
            for port in self.ports:
                self._server(f"node{port}", port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
            for port in self.ports:
                _wait(lambda p=port: sync_redis.Redis(port=p).ping(), f"cluster node {port} answers")
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            for port in self.ports:
                _wait(
                    lambda p=port: _cluster_ok(sync_redis.Redis(port=p).execute_command("CLUSTER", "INFO")),
                    f"cluster_state:ok on {port}",
                    timeout=30,
                )
        except BaseException as exc:
            logs = self.logs()
            self.stop()
            if isinstance(exc, subprocess.CalledProcessError):
                raise RuntimeError(f"redis-cli --cluster create failed: {exc.stdout!r} {exc.stderr!r}\n{logs}") from exc
            raise
        return self


class LocalSentinels(_Servers):
    """A primary, one replica and three sentinels watching them as `master_name`."""

    master_name = "citqueue"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.primary, self.replica, *self.sentinel_ports = free_ports(5)

    @property
    def url(self) -> str:
        """The QUEUE_REDIS_URL naming these sentinels."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.master_name}/0"

    def sentinel(self, index: int = 0) -> sync_redis.Redis:
        return sync_redis.Redis(port=self.sentinel_ports[index], socket_timeout=5)

    def master_port(self) -> int:
        _, port = self.sentinel().sentinel_get_master_addr_by_name(self.master_name)
        return int(port)

    def _sentinel_args(self, config: Path) -> list[str]:
        sentinel = shutil.which("redis-sentinel")
        return [sentinel, str(config)] if sentinel else [_bin("redis-server"), str(config), "--sentinel"]

    def start(self) -> LocalSentinels:
        try:
            self._server("primary", self.primary)
            self._server("replica", self.replica, "--replicaof", "127.0.0.1", str(self.primary))
            _wait(
                lambda: sync_redis.Redis(port=self.replica).info("replication").get("master_link_status") == "up",
                "the replica is in sync",
            )
            for port in self.sentinel_ports:
                home = self.workdir / f"sentinel{port}"
                home.mkdir(parents=True, exist_ok=True)
                config = home / "sentinel.conf"  # a sentinel rewrites its config file: one each
                config.write_text(
                    f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {home}\n"
                    f"sentinel monitor {self.master_name} 127.0.0.1 {self.primary} 2\n"
                    f"sentinel down-after-milliseconds {self.master_name} 2000\n"
                    f"sentinel failover-timeout {self.master_name} 10000\n"
                    f"sentinel parallel-syncs {self.master_name} 1\n"
                )
                self._start(f"sentinel{port}", self._sentinel_args(config))
            for index in range(len(self.sentinel_ports)):
                # Each sentinel knows the primary, the replica and the two other sentinels.
                _wait(
                    lambda i=index: (
                        (m := self.sentinel(i).sentinel_master(self.master_name))["num-other-sentinels"] == 2
                        and m["num-slaves"] == 1
                    ),
                    f"sentinel {self.sentinel_ports[index]} sees the replica and the other sentinels",
                    timeout=30,
                )
        except BaseException:
            logs = self.logs()
            self.stop()
            raise RuntimeError(f"sentinels did not come up:\n{logs}") from None
        return self

    def start_failover(self) -> int:
        """SENTINEL FAILOVER (it returns at once; the failover goes on); returns the old primary's port."""
        old = self.master_port()
        self.sentinel().execute_command("SENTINEL FAILOVER", self.master_name)
        return old

    def wait_failover(self, old: int) -> int:
        """The port of the new primary once every sentinel names it and it is a master."""
        new = {self.primary, self.replica}.difference({old}).pop()
        for index in range(len(self.sentinel_ports)):
            _wait(
                lambda i=index: int(self.sentinel(i).sentinel_get_master_addr_by_name(self.master_name)[1]) == new,
                f"sentinel {self.sentinel_ports[index]} names {new} the primary",
                timeout=30,
            )
        _wait(lambda: sync_redis.Redis(port=new).info("replication")["role"] == "master", f"{new} is a master")
        return new
