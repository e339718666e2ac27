"""Bandwidth caps: rates as people type them, and the cap a transfer gets (a tenant's cap
only ever lowers the link's)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.adapters.transfer_plane import push_options
from suanwang.domain.errors import ValidationError
from suanwang.domain.rates import effective_cap, format_rate, parse_rate
from suanwang.domain.transfers import LinkCaps
from suanwang.services.catalogue import default_catalogue
from suanwang.services.fleet_file import parse_fleet_yaml
from suanwang.transfer.status import PushOptions

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "bytes_per_s"),
    [
        ("200MiB/s", 200 * MIB),
        ("100M", 100e6),
        ("1G", 1e9),
        ("500MiB/s", 500 * MIB),
        ("800Mbit/s", 100e6),
        ("1.5Gbps", 1.5e9 / 8),
        ("4 MiB / s", 4 * MIB),
        ("12345", 12345.0),
        ("64KiB", 64 * 1024),
        ("2k", 2000.0),
        ("1TB/s", 1e12),
    ],
)
def test_rates_parse_into_bytes_per_second(text: str, bytes_per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(bytes_per_s)


@pytest.mark.parametrize(
    "text", ["", "0", "0M", "-5M", "fast", "5 parsecs", "1e9", "5MiB/h", "M", "1" * 70, "99999T"]
)
def test_bad_rates_name_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_rate(text, "--max-rate")
    assert err.value.field == "--max-rate"
    assert err.value.hint


def test_format_rate() -> None:
    assert format_rate(4 * MIB) == "4.0 MiB/s"
    assert format_rate(100) == "100 B/s"


caps = st.none() | st.floats(min_value=1.0, max_value=1e12)


@given(caps, caps)
def test_the_effective_cap_is_the_lower_one(transfer: float | None, link: float | None) -> None:
    cap = effective_cap(transfer, link)
    given_caps = [c for c in (transfer, link) if c is not None]
    if not given_caps:
        assert cap is None
        return
    assert cap in given_caps
    assert all(cap <= c for c in given_caps)


@given(caps, caps, st.none() | st.floats(min_value=1e3, max_value=1e12))
def test_push_options_never_exceed_the_link_cap(
    transfer: float | None, link: float | None, rate: float | None
) -> None:
    options = push_options(LinkCaps(rate, link, transfer))
    if link is not None:
        assert options.link_max_bytes_per_s == link  # the shared bucket
        assert 0 < options.max_bytes_per_s <= link  # a tenant only lowers it
    if transfer is not None:
        assert 0 < options.max_bytes_per_s <= transfer
    if transfer is None and link is None:
        assert options.max_bytes_per_s == options.link_max_bytes_per_s == 0  # uncapped
    assert options.link_rate_hint_bytes_per_s == (rate or PushOptions().link_rate_hint_bytes_per_s)


FLEET = """
regions: [{name: sh}, {name: nx}]
clusters: []
wan_links:
  - {between: [sh, nx], bandwidth_gbps: 1, rtt_ms: 1, distance_km: 10, transfer_cap: CAP}
"""


@pytest.mark.parametrize(("cap", "want"), [("400MiB/s", 400 * MIB), ("5000000", 5e6), ("8M", 8e6)])
def test_the_fleet_file_caps_a_link(cap: str, want: float) -> None:
    (link,) = parse_fleet_yaml(FLEET.replace("CAP", cap), default_catalogue()).wan_links
    assert link.transfer_cap_bytes_per_s == pytest.approx(want)


@pytest.mark.parametrize("cap", ["0", "-1", "fast", "'0MiB/s'"])
def test_a_bad_link_cap_names_its_field(cap: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_fleet_yaml(FLEET.replace("CAP", cap), default_catalogue())
    assert err.value.field == "wan_links[0].transfer_cap"
