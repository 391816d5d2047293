"""relay.delivery.slots: places for attempts per destination and per tenant (pure, in memory)."""

from __future__ import annotations

import random
from contextlib import ExitStack

import pytest

from relay.delivery.slots import JITTER, MIN_DEFER, Busy, Slots, defer_for


def test_a_destination_holds_at_most_its_cap() -> None:
    slots = Slots(per_host=2, per_tenant=10, most_defer=15.0)
    with ExitStack() as held:
        held.enter_context(slots.hold("1.2.3.4:443", "alice"))
        held.enter_context(slots.hold("1.2.3.4:443", "bob"))
        with pytest.raises(Busy) as busy:
            held.enter_context(slots.hold("1.2.3.4:443", "carol"))
        assert busy.value.reason == "host"
        with slots.hold("1.2.3.4:8443", "carol"):  # another port is another destination
            assert slots.in_flight("1.2.3.4:8443") == 1
        assert slots.in_flight("1.2.3.4:443") == 2
    assert slots.in_flight("1.2.3.4:443") == 0
    with slots.hold("1.2.3.4:443", "carol"):
        pass


def test_a_tenant_holds_at_most_its_cap_across_destinations() -> None:
    slots = Slots(per_host=10, per_tenant=2, most_defer=15.0)
    with slots.hold("1.1.1.1:80", "alice"), slots.hold("2.2.2.2:80", "alice"):
        with pytest.raises(Busy) as busy:
            with slots.hold("3.3.3.3:80", "alice"):
                pass
        assert busy.value.reason == "tenant"
        with slots.hold("3.3.3.3:80", "bob"):
            pass


def test_a_failed_attempt_gives_its_place_back() -> None:
    slots = Slots(per_host=1, per_tenant=1, most_defer=15.0)
    with pytest.raises(RuntimeError), slots.hold("1.1.1.1:80", "alice"):
        raise RuntimeError("the receiver hung up")
    with slots.hold("1.1.1.1:80", "alice"):
        pass


def test_a_refusal_holds_nothing() -> None:
    slots = Slots(per_host=1, per_tenant=5, most_defer=15.0)
    with slots.hold("1.1.1.1:80", "alice"):
        for _ in range(3):
            with pytest.raises(Busy), slots.hold("1.1.1.1:80", "alice"):
                pass
    with slots.hold("2.2.2.2:80", "alice"):  # the tenant's count did not grow from refusals
        pass


@pytest.mark.parametrize("oldest, expected", [(0.001, MIN_DEFER), (2.0, 2.0), (60.0, 15.0)])
def test_a_deferral_is_about_as_long_as_the_oldest_attempt_in_flight(
    oldest: float, expected: float
) -> None:
    rng = random.Random(7)
    for _ in range(20):
        defer = defer_for([100.0 - oldest, 100.0], 100.0, 15.0, rng=rng)
        assert expected <= defer <= expected * (1 + JITTER)


@pytest.mark.parametrize("tries, expected", [(1, MIN_DEFER), (2, 2 * MIN_DEFER),
                                             (5, 16 * MIN_DEFER), (40, 15.0)])
def test_a_chain_put_off_again_waits_longer(tries: int, expected: float) -> None:
    rng = random.Random(7)
    for _ in range(20):
        defer = defer_for([99.999], 100.0, 15.0, tries, rng)
        assert expected <= defer <= expected * (1 + JITTER)
