"""An on-sale's start on three replicas against one Redis: one draw, in the published order, the
cap held, with a replica SIGKILLed as the start comes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gatekeeper.core.draw import commitment, drawn_order
from tests.cluster_rig import Rig, RigSettings

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VISITORS = 40
CAPACITY = 5
KILLED = 1


async def test_three_replicas_draw_once_in_the_published_order_despite_a_sigkill(
    redis_url: str, tmp_path: Path
) -> None:
    settings = RigSettings(replicas=3, capacity=CAPACITY, rate_ms=50, batch_size=CAPACITY)
    async with Rig(redis_url, tmp_path, settings) as rig:
        starts_ms = int(time.time() * 1000) + 4_000
        schedule = {"prequeueOpensAt": starts_ms - 60_000, "startsAt": starts_ms}
        r = await rig.admin(0, "PUT", "/rooms/default/event", schedule)
        assert r.status_code == 200, r.text
        published = r.json()["commitment"]
        visitors = [rig.new_visitor(i) for i in range(VISITORS)]
        sampler = rig.sampler().start()
        try:
            for v in visitors:  # the pre-queue: a page, then the comeback that takes a place
                for _ in range(2):
                    assert (await rig.request(v, "/page/1", replica=v.index % 3)).kind == "waiting"
            # SIGKILL one replica right at the start, while the others tick across it.
            await asyncio.sleep(max(0.0, starts_ms / 1000 - time.time()))
            rig.replicas[KILLED].kill()
            order: list[str] = []
            deadline = time.monotonic() + 40
            while len(order) < VISITORS and time.monotonic() < deadline:
                for v in visitors:
                    if v.admitted_sid in order or v.sid is None:
                        continue
                    replica = 0 if v.index % 2 else 2
                    reply = await rig.request(v, "/page/2", replica=replica)
                    if reply.kind == "origin":
                        order.append(reply.sid or "")
                        await rig.request(v, "/done", replica=replica)  # leave: next one in
                await asyncio.sleep(0.05)
        finally:
            sampler.stop()
            await asyncio.gather(*(v.client.aclose() for v in visitors))
        public = (await rig.admin(0, "GET", "/rooms/default/event")).json()
        seed = public["seed"]
        assert seed is not None and commitment(seed) == published
        assert public["drawnAt"] is not None
        sids = [v.sids[0] for v in visitors]
        hashes = await asyncio.to_thread(rig.session_hashes, sids)
        granted = sorted(sids, key=lambda sid: int(hashes[sid]["grantedAt"]))
        expected = drawn_order(seed, sids)
        # Admitted in batches of CAPACITY: within a grant step the order is the draw's too.
        by_step = [int(hashes[sid]["grantedAt"]) for sid in expected]
        assert by_step == sorted(by_step), "a later-drawn visitor was granted earlier"
        assert set(granted) == set(expected) and len(order) == VISITORS
        assert sampler.max <= CAPACITY, f"active reached {sampler.max} > {CAPACITY}"
        print(
            f"\n[on-sale, 3 replicas, one SIGKILLed at the start] {VISITORS} in the pre-queue "
            f"admitted in the published order; max active {sampler.max} (capacity {CAPACITY})"
        )
