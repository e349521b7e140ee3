"""A throwaway Sentinel setup for tests: a primary, one replica and three Sentinels (quorum 2)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.redis_server import HOW_TO_GET_REDIS, RedisServer, free_port

SERVICE = "mymaster"


class SentinelRig:
    """Redis processes on 127.0.0.1 that Sentinel fails over fast (`down_after_ms`).

    With `password`, the data nodes require it (and replicate with it); with
    `sentinel_password`, so do the Sentinels.
    """

    def __init__(
        self, *, down_after_ms: int = 1000, failover_timeout_ms: int = 3000,
        password: str | None = None, sentinel_password: str | None = None,
    ) -> None:  # fmt: skip
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.password = password
        self.sentinel_password = sentinel_password
        # requirepass is set once started (RedisServer.start pings without a password).
        auth = ("--masterauth", password) if password else ()
        self.primary = RedisServer(None, *auth)
        self.replica = RedisServer(None, *auth, "--replicaof", "127.0.0.1", str(self.primary.port))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.dir = Path(tempfile.mkdtemp(prefix="gk-sentinel-"))
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, scheme: str = "redis+sentinel", suffix: str = "") -> str:
        """The Sentinel URL of the service (with the data nodes' password when there is one)."""
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"{scheme}://{auth}{hosts}/{SERVICE}{suffix}"

    def start(self) -> SentinelRig:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(HOW_TO_GET_REDIS)
        for server in (self.primary, self.replica):
            server.start()
            if self.password:
                with redis.Redis(port=server.port) as client:
                    client.config_set("requirepass", self.password)
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            lines = [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {self.dir}",
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
                f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {SERVICE} 1",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
            if self.sentinel_password:
                # Sentinels talk to each other with the same password they require.
                lines += [f"requirepass {self.sentinel_password}"]
                lines += [f"sentinel sentinel-pass {self.sentinel_password}"]
            conf.write_text("\n".join(lines) + "\n")
            log = self.dir / f"sentinel-{port}.log"
            self.sentinels.append(
                subprocess.Popen(
                    [binary, str(conf), "--sentinel", "--logfile", str(log)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self.wait_ready()
        return self

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port, password=self.sentinel_password, socket_timeout=0.5, decode_responses=True
        )

    def data_client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=0.5)

    def wait_ready(self, timeout_s: float = 20) -> None:
        """Until every Sentinel sees the primary, the replica and both other Sentinels, and the
        replica is in sync: only then can a failover elect a leader and promote."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if all(self._sees_all(port) for port in self.sentinel_ports):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Sentinels not ready; logs in {self.dir}")
            time.sleep(0.1)

    def _sees_all(self, port: int) -> bool:
        with self.sentinel_client(port) as client:
            state = client.sentinel_master(SERVICE)
            replicas = client.sentinel_slaves(SERVICE)
        synced = [r for r in replicas if r.get("master-link-status") == "ok"]
        return bool(
            state["num-other-sentinels"] == 2 and synced and not state.get("is_sdown", False)
        )

    def primary_port(self) -> int:
        """The primary's port as the first Sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                with self.sentinel_client(port) as client:
                    _, primary = client.sentinel_get_master_addr_by_name(SERVICE)
                    return int(primary)
            except redis.RedisError:
                continue
        raise RuntimeError("no Sentinel answers")

    def wait_promoted(self, old_port: int, timeout_s: float = 30) -> int:
        """The new primary's port, once a Sentinel names one other than `old_port` and it
        answers as a primary."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port != old_port:
                with self.data_client(port) as client:
                    if client.info("replication")["role"] == "master":
                        return port
            time.sleep(0.05)
        raise RuntimeError(f"no failover within {timeout_s} s; logs in {self.dir}")

    def fail_over(self, old_port: int) -> int:
        """A coordinated failover (`SENTINEL FAILOVER`: the old primary stays up, to be demoted
        to a replica later): the new primary's port."""
        with self.sentinel_client(self.sentinel_ports[0]) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        return self.wait_promoted(old_port)

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.primary.stop()
        self.replica.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
