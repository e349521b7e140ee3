"""A virtual-clock simulation of a ticket on-sale against the real embedded store.

    .venv/bin/python -m bench.onsale --out /tmp/onsale             # 1,000,000 visitors, minutes
    .venv/bin/python -m bench.onsale --visitors 20000 --out /tmp/q  # a few seconds

One room with an event: the pre-queue opens `--prequeue-min` before `startsAt`. Visitors arrive
by a curve given as shares of `--visitors`: `--early` uniformly over the pre-queue (before its
last minute), `--rush` in the last minute, the rest after the start with an exponential tail
(mean `--tail-s`). A bot farm of `--bots` browsers joins the pre-queue too (`--bot-arrival`).
The real `MemoryStore` runs every step on a clock this module moves: joins (with the rank key
`core.draw.rank_key` during the pre-queue, as the gate gives it), one grant step every
`--rate-ms`, polls and leaves. Nothing waits for real time.

Visitors poll only as often as the store needs to keep them (every `--heartbeat-s`, default half
the waiting timeout), from buckets of due ticks, so a million waiters cost one poll each per
heartbeat, not one per second. A share `--abandon` give up after an exponential patience (mean
`--patience-s`): they stop polling and the store expires them after the waiting timeout, or
admits them first (a "ghost": the place lapses after the claim window). Admitted visitors claim
their place within 5 s, stay `--stay-s` (uniform), renewing their lease if needed, and leave.

The report (table on stdout, `onsale.json` and `onsale.png` in `--out`): Kendall's tau between
arrival and admission order for the pre-queue (all admitted, and those who never give up: the
draw alone, free of abandonment's selection) and for later arrivals, whether every later
arrival was admitted after every pre-queue visitor, wait percentiles, the bot farm's share of
the first K admissions against N_bots*K/pre-queue, the audit of the draw (the admission order of
the pre-queue recomputed from the published seed), wall time, simulated time and peak RSS.
Every random choice, the draw's seed included, comes from `--seed`: runs are reproducible.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gatekeeper.core.draw import commitment, drawn_order, rank_key
from gatekeeper.store.base import NO_ENTRY, Entry, EventField, RoomPolicy, Status
from gatekeeper.store.memory import MemoryStore

ROOM = "onsale"
STARTS_MS = 1_900_000_000_000  # startsAt (epoch ms); the clock starts when the pre-queue opens
NEVER = 1 << 62
CLAIM_WITHIN_MS = 5_000  # an admitted visitor's page sees ACTIVE and claims within this
PREQUEUE, LATER, BOT = 0, 1, 2  # kinds of visitor
# A visitor's state in the simulation (not the store's): what its next due tick does.
WAIT, GONE, ADMITTED, ACTIVE, DONE, LOST, GHOST = range(7)
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Params:
    visitors: int = 1_000_000
    bots: int = -1  # -1: visitors / 200 (5,000 for a million)
    bot_arrival: str = "last-second"
    capacity: int = 2_000
    batch: int = 200
    rate_ms: int = 200
    prequeue_min: float = 30.0
    early: float = 0.2
    rush: float = 0.2
    tail_s: float = 300.0
    stay_s: tuple[float, float] = (10.0, 50.0)
    abandon: float = 0.2
    patience_s: float = 900.0
    waiting_timeout_s: float = 300.0
    heartbeat_s: float = 0.0  # 0: half the waiting timeout
    claim_window_s: float = 60.0
    idle_timeout_s: float = 300.0
    first_k: tuple[int, ...] = (0, 10_000)  # 0: the capacity
    seed: int = 11
    max_hours: float = 48.0

    @property
    def n_bots(self) -> int:
        return self.visitors // 200 if self.bots < 0 else self.bots

    def policy(self) -> RoomPolicy:
        return RoomPolicy(
            capacity=self.capacity,
            batch_size=self.batch,
            waiting_timeout_ms=round(self.waiting_timeout_s * 1000),
            claim_window_ms=round(self.claim_window_s * 1000),
            idle_timeout_ms=round(self.idle_timeout_s * 1000),
            retention_ms=60_000,  # ended sessions go soon: memory stays bounded
        )


class VirtualClock:
    """The store's clock: integer ms that only the simulation moves."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass(slots=True)
class Crowd:
    """Every visitor, in arrival order (index = arrival order; joins happen in that order)."""

    arrive: list[int]
    kind: npt.NDArray[np.int8]
    give_up: list[int]
    stay: list[int]
    sids: list[str]


def make_crowd(p: Params, opens: int, rng: np.random.Generator) -> Crowd:
    """Arrival times by the curve, sorted; ids in the gatekeeper shape `<22 chars>.<room>`."""
    n_early, n_rush = round(p.visitors * p.early), round(p.visitors * p.rush)
    n_later = p.visitors - n_early - n_rush
    last_minute = max(opens, STARTS_MS - 60_000)
    bots_from, bots_to = {
        "last-second": (STARTS_MS - 1_000, STARTS_MS),
        "opening": (opens, opens + 1_000),
        "spread": (opens, STARTS_MS),
    }[p.bot_arrival]
    parts = [
        (rng.integers(opens, max(opens + 1, last_minute), n_early), PREQUEUE),
        (rng.integers(last_minute, STARTS_MS, n_rush), PREQUEUE),
        (STARTS_MS + np.floor(rng.exponential(p.tail_s * 1000, n_later)).astype(np.int64), LATER),
        (rng.integers(bots_from, bots_to, p.n_bots), BOT),
    ]
    times = np.concatenate([t.astype(np.int64) for t, _ in parts])
    kinds = np.concatenate([np.full(len(t), k, dtype=np.int8) for t, k in parts])
    order = np.argsort(times, kind="stable")
    times, kinds = times[order], kinds[order]
    n = len(times)
    patience = np.floor(rng.exponential(p.patience_s * 1000, n)).astype(np.int64)
    quits = (rng.random(n) < p.abandon) & (kinds != BOT)
    give_up = np.where(quits, times + patience, NEVER)
    lo, hi = (round(s * 1000) for s in p.stay_s)
    stay = rng.integers(lo, max(lo + 1, hi + 1), n)
    raw = rng.bytes(16 * n)
    b64 = base64.urlsafe_b64encode
    sids = [f"{b64(raw[i : i + 16])[:22].decode()}.{ROOM}" for i in range(0, 16 * n, 16)]
    return Crowd(times.tolist(), kinds, give_up.tolist(), stay.tolist(), sids)


@dataclass(slots=True)
class Run:
    """What one simulation saw: the raw material of the report (and of the tests)."""

    params: Params
    crowd: Crowd
    seed: str
    opens: int
    order: list[int] = field(default_factory=list)  # visitor indices, in admission order
    order_at: list[int] = field(default_factory=list)  # when each admission happened (ms)
    state: list[int] = field(default_factory=list)
    timeline: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    prequeue_at_draw: int = 0
    lost: int = 0
    ended_ms: int = 0
    wall_s: float = 0.0
    controls: dict[str, str] = field(default_factory=dict)


class Simulation:
    """Drives the store: arrivals, due polls and leaves, then one grant step, per tick."""

    def __init__(self, p: Params, *, progress: bool = False) -> None:
        self.started = time.perf_counter()
        self.p = p
        self.progress = progress
        self.opens = STARTS_MS - round(p.prequeue_min * 60_000)
        self.clock = VirtualClock(self.opens)
        self.store = MemoryStore(clock=self.clock)
        self.policy = p.policy()
        rng = np.random.default_rng(p.seed)
        seed = rng.bytes(32).hex()  # what core.draw.new_seed() makes, but reproducible
        self.run = Run(p, make_crowd(p, self.opens, rng), seed, self.opens)
        n = len(self.run.crowd.arrive)
        self.run.state = [WAIT] * n
        self.next_tick = [0] * n
        self.leave_at = [0] * n
        self.due: dict[int, list[int]] = {}
        self.index = {sid: i for i, sid in enumerate(self.run.crowd.sids)}
        self.pick = random.Random(p.seed)
        self.hb_ms = round((p.heartbeat_s or p.waiting_timeout_s / 2) * 1000)
        self.renew_ms = round(p.idle_timeout_s * 500)
        self.admitted = [0, 0]  # pre-queue, later

    def _at(self, i: int, t: int) -> None:
        """Visitor `i` acts again at the first tick at or after `t`."""
        k = -(-(t - self.opens) // self.p.rate_ms)
        self.next_tick[i] = k
        self.due.setdefault(k, []).append(i)

    def _admit(self, i: int, now: int) -> None:
        run = self.run
        run.order.append(i)
        run.order_at.append(now)
        self.admitted[run.crowd.arrive[i] >= STARTS_MS] += 1

    async def _arrive(self, i: int) -> None:
        run, t = self.run, self.run.crowd.arrive[i]
        self.clock.now = t
        sid = run.crowd.sids[i]
        entry = NO_ENTRY
        if t < STARTS_MS:  # the gate gives a pre-queue join its rank key
            entry = Entry(client="", lazy=False, rank=rank_key(run.seed, sid))
        ticket = await self.store.join(ROOM, sid, self.policy, entry=entry)
        if ticket.status is Status.ACTIVE:  # a free place and nobody waiting
            self._admit(i, t)
            run.state[i] = ACTIVE
            self.leave_at[i] = t + run.crowd.stay[i]
            self._at(i, min(self.leave_at[i], t + self.renew_ms))
        else:
            self._at(i, t + self.hb_ms)

    async def _act(self, i: int, now: int) -> None:
        """Visitor `i`'s due step: a heartbeat, the claim of a place, a renewal, or leaving."""
        run, state = self.run, self.run.state[i]
        sid = run.crowd.sids[i]
        if state == WAIT:
            if run.crowd.give_up[i] <= now:
                run.state[i] = GONE  # stops polling: the store expires it (or admits a ghost)
                return
            ticket = await self.store.poll(sid, self.policy)
            if ticket is not None and ticket.status is Status.WAITING:
                self._at(i, now + self.hb_ms)
            else:
                run.state[i], run.lost = LOST, run.lost + 1
        elif state == ADMITTED:
            ticket = await self.store.poll(sid, self.policy)
            if ticket is None or ticket.status is not Status.ACTIVE:
                run.state[i], run.lost = LOST, run.lost + 1
                return
            run.state[i] = ACTIVE
            self.leave_at[i] = now + run.crowd.stay[i]
            self._at(i, min(self.leave_at[i], now + self.renew_ms))
        elif state == ACTIVE:
            if now >= self.leave_at[i]:
                await self.store.leave(sid, self.policy)
                run.state[i] = DONE
            else:
                await self.store.poll(sid, self.policy)
                self._at(i, min(self.leave_at[i], now + self.renew_ms))

    async def _draw_moment(self) -> None:
        """Just before the first grant step at or after the start: the pre-queue's size."""
        counts = await self.store.counts(ROOM)
        later = sum(1 for t in self.run.crowd.arrive[: self.arrived] if t >= STARTS_MS)
        self.run.prequeue_at_draw = max(0, counts.waiting - later)

    async def simulate(self) -> Run:
        p, run, store, clock = self.p, self.run, self.store, self.clock
        await store.set_controls(
            ROOM,
            {
                EventField.OPENS: str(self.opens),
                EventField.STARTS: str(STARTS_MS),
                EventField.SHUFFLE: "1",
                EventField.SEED: run.seed,
                EventField.COMMITMENT: commitment(run.seed),
            },
        )
        arrive, n = run.crowd.arrive, len(run.crowd.arrive)
        sample_every = max(1, 5_000 // p.rate_ms)
        say_every = max(1, 1_800_000 // p.rate_ms)  # every 30 simulated minutes
        horizon = self.opens + round(p.max_hours * 3_600_000)
        self.arrived, drawn, k = 0, False, 0
        while True:
            now = self.opens + k * p.rate_ms
            while self.arrived < n and arrive[self.arrived] <= now:
                await self._arrive(self.arrived)
                self.arrived += 1
            clock.now = now
            for i in self.due.pop(k, ()):
                if self.next_tick[i] == k:
                    await self._act(i, now)
            if not drawn and now >= STARTS_MS:
                await self._draw_moment()
                drawn = True
            report = await store.grant(ROOM, self.policy)
            for sid in report.granted:
                i = self.index[sid]
                self._admit(i, now)
                if run.state[i] == WAIT and run.crowd.give_up[i] > now:
                    run.state[i] = ADMITTED
                    self._at(i, now + self.pick.randint(1, CLAIM_WITHIN_MS))
                else:
                    run.state[i] = GHOST
            if k % sample_every == 0:
                pre, later = self.admitted
                run.timeline.append(
                    ((now - STARTS_MS) / 1000, report.waiting, report.active, pre, later)
                )
            if self.progress and k % say_every == 0:
                print(
                    f"t={(now - STARTS_MS) / 60_000:+6.0f} min  arrived {self.arrived:>9,}  "
                    f"waiting {report.waiting:>9,}  admitted {sum(self.admitted):>9,}  "
                    f"wall {time.perf_counter() - self.started:5.0f} s",
                    file=sys.stderr,
                )
            if (self.arrived == n and report.waiting == 0 and now >= STARTS_MS) or now > horizon:
                break
            k += 1
        run.ended_ms = now
        run.wall_s = time.perf_counter() - self.started  # the crowd's making included
        run.controls = await store.controls(ROOM)
        return run


# --- analysis ------------------------------------------------------------------------------


def inversions(perm: Ints) -> int:
    """Pairs i < j with perm[i] > perm[j], for a permutation of 0..n-1, in O(n log n).

    One pass per bit, top bit first: two values first differ at one bit, where they share the
    higher bits (a group). Within each group (kept in position order) every 1 before a 0 is an
    inversion; then each group is split stably into its 0s and its 1s (an O(n) scatter)."""
    a = np.asarray(perm, dtype=np.int64).copy()
    n = len(a)
    if n < 2:
        return 0
    pos = np.arange(n, dtype=np.int64)
    total = 0
    for b in range(int(n - 1).bit_length() - 1, -1, -1):
        prefix = a >> (b + 1)
        bit = (a >> b) & 1
        start = np.ones(n, dtype=bool)
        start[1:] = prefix[1:] != prefix[:-1]
        first = np.maximum.accumulate(np.where(start, pos, 0))
        ones = np.cumsum(bit)
        ones_before = ones - bit
        ones_in_group_before = ones_before - ones_before[first]
        total += int(ones_in_group_before[bit == 0].sum())
        last = np.flatnonzero(np.append(start[1:], True))
        group = np.cumsum(start) - 1
        zeros = (last - first[last] + 1) - (ones[last] - ones_before[first[last]])
        zeros_before = pos - first - ones_in_group_before
        target = np.where(
            bit == 0, first + zeros_before, first + zeros[group] + ones_in_group_before
        )
        moved = np.empty_like(a)
        moved[target] = a
        a = moved
    return total


def kendall_tau(x: Ints, y: Ints) -> float:
    """Kendall's tau of two orderings of the same items (distinct keys: no ties), O(n log n)."""
    n = len(x)
    if n < 2:
        return float("nan")
    y_by_x = np.asarray(y)[np.argsort(x, kind="stable")]
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(y_by_x, kind="stable")] = np.arange(n, dtype=np.int64)
    return 1.0 - 4.0 * inversions(ranks) / (n * (n - 1))


def percentiles(ms: Ints) -> dict[str, float]:
    if len(ms) == 0:
        return {"n": 0}
    q = np.percentile(ms / 1000, [50, 90, 99])
    return {"n": len(ms), "p50_s": float(q[0]), "p90_s": float(q[1]), "p99_s": float(q[2])}


def audit(run: Run, pre_admitted: list[int]) -> dict[str, Any]:
    """Recompute the pre-queue's order from the published seed and the documented rule."""
    c, published = run.crowd, run.controls.get(EventField.SEED, "")
    pre_ids = [c.sids[i] for i in range(len(c.arrive)) if c.arrive[i] < STARTS_MS]
    admitted = {c.sids[i] for i in pre_admitted}
    expected = [sid for sid in drawn_order(published, pre_ids) if sid in admitted]
    ok = expected == [c.sids[i] for i in pre_admitted]
    committed = commitment(published) == run.controls.get(EventField.COMMITMENT)
    return {"ok": ok and committed, "order_matches": ok, "commitment_matches": committed,
            "seed": published, "commitment": run.controls.get(EventField.COMMITMENT),
            "drawn_at": run.controls.get(EventField.DRAWN)}  # fmt: skip


def bot_share(run: Run, order: Ints, pre_order_by_arrival: Ints) -> list[dict[str, Any]]:
    kind, p = run.crowd.kind, run.params
    total, bots = run.prequeue_at_draw, p.n_bots
    rows = []
    for k in p.first_k:
        k = min(k or p.capacity, len(pre_order_by_arrival))
        got = int((kind[order[:k]] == BOT).sum())
        share = bots / total if total else 0.0
        sd = math.sqrt(k * share * (1 - share) * (total - k) / max(1, total - 1))
        fifo = int((kind[pre_order_by_arrival[:k]] == BOT).sum())
        rows.append({"k": k, "bots": got, "expected": k * share, "sd": sd,
                     "fifo_would_give": fifo})  # fmt: skip
    return rows


def analyse(run: Run) -> dict[str, Any]:
    c, p = run.crowd, run.params
    arrive = np.asarray(c.arrive, dtype=np.int64)
    order = np.asarray(run.order, dtype=np.int64)
    at = np.asarray(run.order_at, dtype=np.int64)
    state = np.asarray(run.state, dtype=np.int8)
    seq = np.full(len(arrive), -1, dtype=np.int64)
    seq[order] = np.arange(len(order))
    pre = order[arrive[order] < STARTS_MS]
    later = order[arrive[order] >= STARTS_MS]
    waited = at - arrive[order]
    real = state[order] != GHOST
    is_pre = arrive[order] < STARTS_MS
    # Visitors who never give up: their admission does not depend on their place in line, so
    # their tau measures the draw alone (abandonment removes more of the pre-queue's last-minute
    # arrivals, whose would-be quitters are still in line at the start, from the late places).
    loyal = pre[np.asarray(c.give_up, dtype=np.int64)[pre] == NEVER]
    pre_max = int(seq[pre].max()) if len(pre) else -1
    later_min = int(seq[later].min()) if len(later) else len(order)
    n_pre = int((arrive < STARTS_MS).sum())
    return {
        "params": {**asdict(p), "bots": p.n_bots},
        "visitors": len(arrive),
        "prequeue_visitors": n_pre,
        "later_visitors": len(arrive) - n_pre,
        "prequeue_at_draw": run.prequeue_at_draw,
        "admitted": len(order),
        "admitted_prequeue": len(pre),
        "admitted_later": len(later),
        "ghosts": int((state == GHOST).sum()),
        "abandoned_unadmitted": int((state == GONE).sum()),
        "lost": run.lost,
        "admitted_before_start": int((at < STARTS_MS).sum()),
        "first_admission_s": float((at.min() - STARTS_MS) / 1000) if len(at) else None,
        # Arrival order is the join order: the visitor index (times may tie to the ms).
        "tau_prequeue": kendall_tau(pre, seq[pre]),
        "tau_prequeue_loyal": kendall_tau(loyal, seq[loyal]),
        "tau_prequeue_loyal_n": len(loyal),
        "tau_sd_if_random": math.sqrt(4 / (9 * len(loyal))) if len(loyal) else None,
        "tau_later": kendall_tau(later, seq[later]),
        "later_after_prequeue": pre_max < later_min,
        "wait_prequeue": percentiles(waited[is_pre & real]),
        "wait_prequeue_after_start": percentiles(at[is_pre & real] - STARTS_MS),
        "wait_later": percentiles(waited[~is_pre & real]),
        "bot_farm": bot_share(run, order, np.sort(pre)),
        "audit": audit(run, pre.tolist()),
        "simulated_s": (run.ended_ms - run.opens) / 1000,
        "simulated_after_start_s": (run.ended_ms - STARTS_MS) / 1000,
        "wall_simulation_s": run.wall_s,
    }


def plot(run: Run, path: Path) -> None:
    """Admissions per minute (pre-queue vs later arrivals) and the waiting line over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrive = np.asarray(run.crowd.arrive, dtype=np.int64)
    order = np.asarray(run.order, dtype=np.int64)
    minutes = (np.asarray(run.order_at, dtype=np.int64) - STARTS_MS) / 60_000
    t = np.asarray(run.timeline, dtype=np.float64).reshape(-1, 5)
    lo, hi = math.floor(t[0, 0] / 60), math.ceil(t[-1, 0] / 60) + 1
    bins = np.arange(lo, hi + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), dpi=110, sharex=True)
    for mask, label, color in (
        (arrive[order] < STARTS_MS, "pre-queue visitors", "tab:purple"),
        (arrive[order] >= STARTS_MS, "later arrivals", "tab:green"),
    ):
        counts, _ = np.histogram(minutes[mask], bins=bins)
        top.step(bins[:-1], counts, where="post", label=label, color=color)
    top.set_ylabel("admissions per minute")
    top.set_title(
        f"On-sale: {len(arrive):,} visitors, capacity {run.params.capacity:,}, "
        f"pre-queue {run.params.prequeue_min:g} min (virtual clock)"
    )
    bottom.plot(t[:, 0] / 60, t[:, 1], label="waiting", color="tab:orange")
    bottom.plot(t[:, 0] / 60, t[:, 2], label="admitted (active)", color="tab:blue")
    bottom.set_ylabel("sessions")
    bottom.set_xlabel("minutes since startsAt")
    for ax in (top, bottom):
        ax.axvline(0, color="tab:red", linestyle="--", linewidth=1, label="startsAt")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(r: dict[str, Any]) -> str:
    def w(key: str) -> str:
        x = r[key]
        if not x["n"]:
            return "none admitted"
        return f"p50 {x['p50_s']:,.0f} s, p90 {x['p90_s']:,.0f} s, p99 {x['p99_s']:,.0f} s"

    rows = [
        ("visitors (pre-queue / later / bots)",
         f"{r['visitors']:,} ({r['prequeue_visitors']:,} / {r['later_visitors']:,} / "
         f"{r['params']['bots']:,})"),
        ("pre-queue at the draw", f"{r['prequeue_at_draw']:,}"),
        ("admitted (pre-queue / later)",
         f"{r['admitted']:,} ({r['admitted_prequeue']:,} / {r['admitted_later']:,})"),
        ("gave up unadmitted / ghosts / lost",
         f"{r['abandoned_unadmitted']:,} / {r['ghosts']:,} / {r['lost']:,}"),
        ("admitted before the start", f"{r['admitted_before_start']}"),
        ("Kendall tau, pre-queue", f"{r['tau_prequeue']:+.4f}"),
        ("Kendall tau, pre-queue who never give up",
         f"{r['tau_prequeue_loyal']:+.4f} (n {r['tau_prequeue_loyal_n']:,}; a random order: "
         f"± {r['tau_sd_if_random']:.4f})"),
        ("Kendall tau, later arrivals", f"{r['tau_later']:+.4f}"),
        ("every later arrival after the pre-queue", "yes" if r["later_after_prequeue"] else "NO"),
        ("wait, pre-queue (from arrival)", w("wait_prequeue")),
        ("wait, pre-queue (from startsAt)", w("wait_prequeue_after_start")),
        ("wait, later arrivals", w("wait_later")),
        *[(f"bot farm in first {b['k']:,}",
           f"{b['bots']:,} (expected {b['expected']:,.1f} ± {b['sd']:.1f}; "
           f"arrival order would give {b['fifo_would_give']:,})") for b in r["bot_farm"]],
        ("audit (order = drawn_order(seed))", "ok" if r["audit"]["ok"] else "FAILED"),
        ("simulated", f"{r['simulated_s'] / 3600:.2f} h ({r['simulated_after_start_s'] / 3600:.2f}"
                      " h after startsAt)"),
        ("wall time: simulation / with report",
         f"{r['wall_simulation_s']:.1f} s / {r['wall_total_s']:.1f} s"),
        ("peak RSS", f"{r['peak_rss_mb']:,.0f} MB"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def simulate(p: Params, out: Path, *, progress: bool = False) -> tuple[Run, dict[str, Any]]:
    """Run, analyse, write `onsale.png` and `onsale.json` into `out`."""
    started = time.perf_counter()
    run = asyncio.run(Simulation(p, progress=progress).simulate())
    result = analyse(run)
    out.mkdir(parents=True, exist_ok=True)
    plot(run, out / "onsale.png")
    result["wall_total_s"] = time.perf_counter() - started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / "onsale.json").write_text(json.dumps(result, indent=2) + "\n")
    return run, result


def parse(argv: list[str] | None) -> tuple[Params, Path]:
    d = Params()
    ap = argparse.ArgumentParser(
        prog="python -m bench.onsale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results/onsale"))
    ap.add_argument("--visitors", type=int, default=d.visitors)
    ap.add_argument("--bots", type=int, default=d.bots, help="default: visitors / 200")
    ap.add_argument("--bot-arrival", choices=("last-second", "opening", "spread"),
                    default=d.bot_arrival)  # fmt: skip
    for name in ("capacity", "batch", "rate_ms", "seed"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("prequeue_min", "early", "rush", "tail_s", "abandon", "patience_s",
                 "waiting_timeout_s", "heartbeat_s", "claim_window_s", "idle_timeout_s",
                 "max_hours"):  # fmt: skip
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    ap.add_argument("--stay-s", type=float, nargs=2, default=d.stay_s, metavar=("MIN", "MAX"))
    ap.add_argument("--first-k", type=int, nargs="+", default=d.first_k, help="0: the capacity")
    a = ap.parse_args(argv)
    out = a.__dict__.pop("out")
    a.stay_s, a.first_k = tuple(a.stay_s), tuple(a.first_k)
    if a.early + a.rush > 1:
        ap.error("--early + --rush must be at most 1")
    return Params(**vars(a)), out


def main(argv: list[str] | None = None) -> int:
    p, out = parse(argv)
    _, result = simulate(p, out, progress=True)
    print(table(result))
    print(f"written: {out / 'onsale.json'}, {out / 'onsale.png'}", file=sys.stderr)
    ok = (
        result["audit"]["ok"]
        and result["later_after_prequeue"]
        and result["admitted_before_start"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
