"""A throwaway local Redis Cluster for tests: redis-server masters joined by redis-cli."""

from __future__ import annotations

import shutil
import subprocess
import time

import redis
from redis.crc import key_slot

from tests.redis_server import RedisServer, free_port

HOW_TO_GET_CLUSTER = (
    "Redis Cluster tests need the redis-server and redis-cli binaries on PATH "
    "(`apt-get install redis-server` provides both)."
)


class RedisClusterProcesses:
    """`masters` redis-server processes on 127.0.0.1, each owning a share of the 16384 slots."""

    def __init__(self, masters: int = 3) -> None:
        ports: set[int] = set()
        while len(ports) < 2 * masters:
            ports.add(free_port())
        data, bus = sorted(ports)[:masters], sorted(ports)[masters:]
        # The bus port is given explicitly: the default (port + 10000) may be out of range.
        self.nodes = [
            RedisServer(
                port,
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(bus_port),
                "--cluster-node-timeout", "5000",
            )
            for port, bus_port in zip(data, bus, strict=True)
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """The store URL: every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self, timeout_s: float = 20.0) -> RedisClusterProcesses:
        """Start the servers, create the cluster, and wait until every node says it is ok."""
        cli = shutil.which("redis-cli")
        if cli is None or shutil.which("redis-server") is None:
            raise RuntimeError(HOW_TO_GET_CLUSTER)
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout_s,
            )  # fmt: skip
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}")
            self.wait_ok(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout_s: float = 20.0) -> None:
        """Block until every node reports `cluster_state:ok` with all slots assigned and
        agrees on the number of known nodes."""
        deadline = time.monotonic() + timeout_s
        while True:
            infos = [self.cluster_info(port) for port in self.ports]
            if all(
                i.get("cluster_state") == "ok"
                and i.get("cluster_slots_assigned") == "16384"
                and i.get("cluster_slots_ok") == "16384"
                and i.get("cluster_known_nodes") == str(len(self.nodes))
                for i in infos
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster did not become ok: {infos}")
            time.sleep(0.05)

    @staticmethod
    def cluster_info(port: int) -> dict[str, str]:
        client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
        try:
            info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
        except redis.RedisError:
            return {}
        finally:
            client.close()
        return {str(k): str(v) for k, v in info.items()}

    def client(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one node; the caller closes it."""
        return redis.Redis(port=port, socket_timeout=5, decode_responses=True)

    def node_id(self, port: int) -> str:
        with self.client(port) as c:
            return str(c.execute_command("CLUSTER MYID"))

    def owner(self, key: str) -> int:
        """The port of the node serving `key`'s slot."""
        port = self.slot_owner(key_slot(key.encode()))
        if port is None:
            raise LookupError(f"nobody serves {key!r}")
        return port

    def slot_owner(self, slot: int, seen_by: int | None = None) -> int | None:
        """The port of the master serving `slot`, as the node on `seen_by` sees it."""
        with self.client(seen_by or self.ports[0]) as c:
            for start, end, master, *_ in c.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        return None

    def move_slot(self, slot: int, to_port: int) -> None:
        """Reshard one slot, keys included, to the node on `to_port` (the manual
        IMPORTING / MIGRATING / MIGRATE / SETSLOT NODE procedure), then wait until every
        node agrees on its new owner."""
        from_port = self.slot_owner(slot)
        if from_port == to_port:
            return
        src, dst = self.client(from_port), self.client(to_port)
        try:
            src_id, dst_id = self.node_id(from_port), self.node_id(to_port)
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            for c in (dst, src):
                c.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        finally:
            src.close()
            dst.close()
        deadline = time.monotonic() + 10
        while any(self.slot_owner(slot, seen_by=port) != to_port for port in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"slot {slot} did not settle on {to_port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill every node and remove its directory."""
        for node in self.nodes:
            node.stop()
