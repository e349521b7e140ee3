"""The on-sale simulator (bench/onsale.py) on 20,000 visitors: the real embedded store, a
virtual clock, and the fairness figures it reports, checked against the published rule."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.onsale import STARTS_MS, Params, Run, inversions, kendall_tau, simulate
from gatekeeper.core.draw import commitment, drawn_order
from gatekeeper.store.base import EventField

VISITORS = 20_000


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("onsale")
    run, result = simulate(Params(visitors=VISITORS, bots=200, seed=7), out)
    return run, result, out


def _split(run: Run) -> tuple[list[int], list[int]]:
    """Admitted visitor indices (= arrival order), pre-queue and later, in admission order."""
    pre = [i for i in run.order if run.crowd.arrive[i] < STARTS_MS]
    later = [i for i in run.order if run.crowd.arrive[i] >= STARTS_MS]
    return pre, later


def test_nobody_is_admitted_before_the_start(sim: tuple[Run, dict[str, Any], Path]) -> None:
    run, result, _ = sim
    assert run.order, "nobody was admitted"
    assert min(run.order_at) >= STARTS_MS
    assert result["admitted_before_start"] == 0
    assert result["lost"] == 0  # no visitor that kept polling was ever expired


def test_the_prequeue_is_admitted_in_the_published_drawn_order(
    sim: tuple[Run, dict[str, Any], Path],
) -> None:
    run, result, _ = sim
    seed = run.controls[EventField.SEED]
    assert seed == run.seed
    assert commitment(seed) == run.controls[EventField.COMMITMENT]
    assert int(run.controls[EventField.DRAWN]) >= STARTS_MS
    pre, _ = _split(run)
    assert len(pre) > VISITORS * 0.3
    admitted = [run.crowd.sids[i] for i in pre]
    everyone = [run.crowd.sids[i] for i, t in enumerate(run.crowd.arrive) if t < STARTS_MS]
    kept = set(admitted)
    assert admitted == [sid for sid in drawn_order(seed, everyone) if sid in kept]
    assert result["audit"]["ok"] is True


def test_prequeue_order_is_shuffled_and_later_arrivals_are_fifo_behind_it(
    sim: tuple[Run, dict[str, Any], Path],
) -> None:
    run, result, _ = sim
    pre, later = _split(run)
    assert later, "no later arrival was admitted"
    assert abs(result["tau_prequeue"]) < 0.1
    assert abs(result["tau_prequeue_loyal"]) < 0.1  # those whose admission abandonment can't bias
    assert later == sorted(later)  # FIFO: admission order is arrival order
    assert result["tau_later"] > 0.999
    seq = {i: n for n, i in enumerate(run.order)}
    assert max(seq[i] for i in pre) < min(seq[i] for i in later)
    assert result["later_after_prequeue"] is True


def test_the_report_and_the_plot_are_written(sim: tuple[Run, dict[str, Any], Path]) -> None:
    _, result, out = sim
    png, report = out / "onsale.png", out / "onsale.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads(report.read_text())
    assert written["tau_prequeue"] == result["tau_prequeue"]
    first = written["bot_farm"][0]  # the first `capacity` admissions
    assert first["k"] == 2_000
    assert abs(first["bots"] - first["expected"]) < 5 * first["sd"] + 1
    assert written["wait_later"]["n"] > 0


def test_kendall_tau_in_n_log_n_agrees_with_the_definition() -> None:
    rng = random.Random(3)
    for n in (0, 1, 2, 3, 10, 257, 600):
        perm = list(range(n))
        rng.shuffle(perm)
        brute = sum(1 for i, j in itertools.combinations(range(n), 2) if perm[i] > perm[j])
        assert inversions(np.asarray(perm, dtype=np.int64)) == brute
    x = np.asarray(rng.sample(range(10**6), 500), dtype=np.int64)
    y = np.asarray(rng.sample(range(10**6), 500), dtype=np.int64)
    pairs = itertools.combinations(range(500), 2)
    s = sum(int(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])) for i, j in pairs)
    assert kendall_tau(x, y) == pytest.approx(s / (500 * 499 / 2))
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert kendall_tau(x, -x) == pytest.approx(-1.0)
