"""kill -9 of a process mid-way through storage metering bills every byte-hour exactly once.

Twenty datasets are stored; a child process meters them on a clock running 10 simulated
hours per second and is killed with SIGKILL at random moments, then restarted, four times.
Each dataset's ledger pieces and its watermark commit in one transaction, so afterwards a
final metering run to a fixed time must give, for every dataset, exactly size x seconds
stored: no piece lost, none counted twice, no gap. SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from suanwang.adapters.db.tables import UsageLedgerRow
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.datasets import DatasetFormat
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.metering import ComputeMeter

OP = Principal("op", Scope.OPERATOR, None)
T0 = 1_800_000_000.0
CHILD = textwrap.dedent(
    """
    import sys, time
    from suanwang.bootstrap import build_platform
    from suanwang.config import Settings
    from suanwang.services.metering import ComputeMeter

    class Fast:
        def __init__(self): self.start = time.monotonic()
        def now(self): return float(sys.argv[3]) + (time.monotonic() - self.start) * 36000

    settings = Settings(data_dir=sys.argv[1], database_url=sys.argv[2])
    platform = build_platform(settings, run_migrations=False)
    meter = ComputeMeter(platform.uows, Fast())
    print("ready", flush=True)
    while True:
        meter.run()
    """
)


def test_kill_dash_nine_meters_storage_exactly_once(settings: Settings, clock: Any) -> None:
    assert clock.now() == T0
    platform = build_platform(settings, clock)
    platform.fleet.apply_yaml("regions: [{name: r1}]\nclusters: []\n")
    platform.tenancy.create_tenant("acme", "Acme", {})
    key = platform.tenancy.create_key(
        OP, tenant="acme", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    )
    acme = platform.tenancy.authenticate(key.secret)
    sizes = {}
    for n in range(20):
        made = platform.datasets.create(acme, f"d{n}", DatasetFormat.BINARY, None)
        upload = platform.datasets.begin_file(acme, made.id, "x")
        upload.write(os.urandom(1000 + 97 * n))
        platform.datasets.finish_file(acme, upload)
        sizes[made.id] = platform.datasets.seal(acme, made.id).size_bytes
    rng = random.Random(20261207)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    argv = [sys.executable, "-c", CHILD, str(settings.data_dir), settings.db_url, str(T0)]
    for _ in range(4):
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.5))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    with platform.uows() as uow:
        before = uow.usage.totals("acme", T0, T0 + 86400 * 30)
    assert any(t.byte_s > 0 for t in before)  # the killed processes did meter
    end = T0 + 10 * 86400
    clock.t = end
    ComputeMeter(platform.uows, clock).run()
    with platform.uows() as uow:
        session = uow.datasets._s  # type: ignore[attr-defined]
        rows = session.execute(
            select(UsageLedgerRow.source, func.sum(UsageLedgerRow.byte_s), func.count())
            .where(UsageLedgerRow.kind == "storage")
            .group_by(UsageLedgerRow.source)
        ).all()
    billed = {source.removeprefix("dataset:"): (int(total), count) for source, total, count in rows}
    assert {d: total for d, (total, _) in billed.items()} == {
        d: size * int(end - T0) for d, size in sizes.items()
    }
    assert all(count == 240 for _, count in billed.values())  # one piece per hour
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
