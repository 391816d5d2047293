"""bench/report.py: the targets a run is judged by, for the polling relay and as shipped."""

from __future__ import annotations

from bench.lags import ArmResult, LagSummary
from bench.report import Target, lag_targets


def arm(name: str, p50: float, p90: float, rate_limited: int = 0) -> ArmResult:
    terminal = LagSummary(10, 0, p50, p90, p90)
    return ArmResult(name, {"terminal": terminal, "intermediate": terminal}, 1.0, 10,
                     rate_limited, 1.0, {})


def by_name(found: list[Target]) -> dict[str, tuple[float, bool]]:
    return {t.name: (round(t.value, 3), t.met) for t in found}


def test_steady_and_burst_are_judged_for_the_polling_relay_and_as_shipped() -> None:
    steady = {"relay": arm("relay", 2.4, 21.0), "round_robin": arm("round_robin", 10.0, 20.0),
              "relay_defaults": arm("relay_defaults", 0.1, 0.3)}
    burst = {"relay": arm("relay", 6.0, 9.0), "round_robin": arm("round_robin", 10.0, 20.0)}
    found = by_name(lag_targets({"steady": steady, "burst": burst}))
    assert found["steady terminal lag p50, relay / round robin"] == (0.24, False)
    assert found["steady terminal lag p90, relay / round robin"] == (1.05, False)
    assert found["steady terminal lag p50, relay defaults (streams) / round robin"] == (
        0.01, True)
    assert found["steady terminal lag p90, relay defaults (streams) / round robin"] == (
        0.015, True)
    assert found["burst terminal lag p50, relay / round robin"] == (0.6, True)
    # Burst was not run as shipped: no target is made up for it.
    assert not any("burst" in name and "defaults" in name for name in found)


def test_a_429_from_the_relay_as_shipped_fails_the_429_target() -> None:
    steady = {"relay": arm("relay", 2.0, 20.0), "round_robin": arm("round_robin", 10.0, 20.0,
                                                                  rate_limited=3),
              "relay_defaults": arm("relay_defaults", 0.1, 0.3, rate_limited=1)}
    found = by_name(lag_targets({"steady": steady}))
    # Round robin's own 429s are not the relay's; the shipped relay's one is.
    assert found["429s caused by the relay (steady)"] == (1, False)


def test_everyday_is_judged_against_the_better_baseline() -> None:
    everyday = {"relay": arm("relay", 1.0, 1.8), "round_robin": arm("round_robin", 1.0, 2.0),
                "sdk_fixed_2s": arm("sdk_fixed_2s", 1.2, 1.8),
                "relay_defaults": arm("relay_defaults", 0.01, 0.02)}
    found = by_name(lag_targets({"everyday": everyday}))
    label = "everyday terminal lag p90, {} / better of round robin and SDK 2 s"
    assert found[label.format("relay")] == (1.0, False)
    assert found[label.format("relay defaults (streams)")] == (0.011, True)
