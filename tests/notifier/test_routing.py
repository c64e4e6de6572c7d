"""Routing is a pure function of the result and the channel configs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medic.notifier.routing import route
from medic.notifier.settings import ChannelConfig, ChannelFilter
from medic.schemas import Outcome
from medic.testing.notifier import make_result


def channel(name: str, **fields: object) -> ChannelConfig:
    return ChannelConfig(name=name, type="console", **fields)  # type: ignore[arg-type]


def test_named_channels_are_used_and_unknown_names_reported() -> None:
    channels = [channel("ops"), channel("audit"), channel("off", enabled=False)]
    chosen = route(make_result(notify=["ops", "off", "nope"]), channels)
    assert chosen.channels == ("ops",)
    assert chosen.unknown == ("nope",)


def test_no_named_channels_means_default_channels_whose_filters_match() -> None:
    channels = [
        channel("ops"),
        channel("only-when-named", default=False),
        channel("critical", filters=ChannelFilter(severities=["critical"])),
        channel("prod", filters=ChannelFilter(clusters=["prod-*"])),
        channel("apps", filters=ChannelFilter(namespaces=["app*"])),
    ]
    assert route(make_result(), channels).channels == ("ops", "apps")
    critical_prod = make_result(cluster="prod-eu", severity="critical", namespace="kube")
    assert route(critical_prod, channels).channels == ("ops", "critical", "prod")


def test_named_channels_still_apply_their_filters() -> None:
    channels = [channel("failures", filters=ChannelFilter(outcomes=[Outcome.FAILED]))]
    assert route(make_result(notify=["failures"]), channels).channels == ()
    failed = make_result(outcome=Outcome.FAILED, notify=["failures"])
    assert route(failed, channels).channels == ("failures",)


def test_skipped_is_quiet_unless_a_channel_opts_in() -> None:
    channels = [
        channel("ops"),
        channel("verbose", filters=ChannelFilter(include_skipped=True)),
        channel("skips", filters=ChannelFilter(outcomes=[Outcome.SKIPPED])),
    ]
    skipped = make_result(outcome=Outcome.SKIPPED, reason="cooldown")
    assert route(skipped, channels).channels == ("verbose", "skips")


@given(
    notify=st.lists(st.sampled_from(["ops", "verbose", "x"]), max_size=3),
    include=st.booleans(),
)
def test_resolved_within_grace_is_never_notified(notify: list[str], include: bool) -> None:
    channels = [
        channel("ops", filters=ChannelFilter(include_skipped=include)),
        channel("verbose", filters=ChannelFilter(outcomes=[Outcome.SKIPPED])),
    ]
    result = make_result(outcome=Outcome.SKIPPED, reason="resolved-within-grace", notify=notify)
    assert route(result, channels).channels == ()


@given(outcome=st.sampled_from(list(Outcome)), severity=st.sampled_from(["info", "critical"]))
def test_unfiltered_default_channel_gets_everything_but_skipped(
    outcome: Outcome, severity: str
) -> None:
    result = make_result(outcome=outcome, severity=severity)
    expected = () if outcome is Outcome.SKIPPED else ("ops",)
    assert route(result, [channel("ops")]).channels == expected
