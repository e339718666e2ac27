"""Screenshots of the console's main pages into docs/screenshots/ (``make screenshots``).

Sets up a throw-away data directory (``suanwang init``: demo fleet, operator key), starts
``suanwang server`` on a free port, runs one local job as the demo tenant, and photographs
the pages with Debian's Chromium (Playwright, no browser download) in Chinese, the demo's
default language, plus the fleet overview in English.

    python scripts/console_screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

CLI = [sys.executable, "-m", "suanwang.cli.main"]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 860}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not become healthy")


def login(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/console/login")
    page.fill("[data-testid=key]", key)
    page.click("[data-testid=login]")
    page.wait_for_selector("[data-testid=who]")


def shoot(page: Page, url: str, path: str, out: Path, name: str) -> None:
    page.goto(f"{url}{path}")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / f"{name}.png"), full_page=False)
    print(f"wrote {out / name}.png", flush=True)


def simulated_load(url: str, key: str) -> None:
    """Simulated training jobs on the demo's Ascend cluster (the clock runs 1000x): short
    ones that finish, long ones that hold cards, and more than fit, which queue with the
    scheduler's reason; so the utilisation and queue pages have something to show."""
    headers = {"Authorization": f"Bearer {key}"}
    shapes = [(8, 3_600)] * 30 + [(32, 86_400)] * 30 + [(64, 43_200)] * 16
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for n, (nodes, seconds) in enumerate(shapes):
            body = {
                "name": f"pretrain-{n}",
                "resources": {"chip": "ascend-910b", "cards_per_node": 8, "nodes": nodes},
                "simulate": {"duration_s": seconds},
            }
            client.post("/api/v1/jobs", json=body).raise_for_status()
    time.sleep(8)  # a few scheduler ticks: admitted, some finished, the rest queued


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="suanwang-shots-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANWANG_")}
    env |= {
        "SUANWANG_DATA_DIR": str(root / "data"),
        "SUANWANG_SIM_SPEEDUP": "1000",
        "SUANWANG_TICK_S": "0.2",
        "SUANWANG_GATEWAY_PORT": str(free_port()),
        "NO_COLOR": "1",
    }
    run(env, "init")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env_url = dict(env, SUANWANG_URL=url)
    with (root / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [*CLI, "server", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_healthy(url)
        operator = (root / "data" / "operator.key").read_text(encoding="utf-8").strip()
        tenant = run(
            dict(env_url, SUANWANG_API_KEY=operator),
            "keys",
            "create",
            "--tenant",
            "demo",
            "--scope",
            "tenant-admin",
            "-q",
        )
        simulated_load(url, tenant)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_context(viewport=VIEWPORT, locale="zh-CN").new_page()
            login(page, url, operator)
            shoot(page, url, "/console/fleet", out, "fleet")
            clusters = httpx.get(
                f"{url}/api/v1/clusters", headers={"Authorization": f"Bearer {operator}"}
            ).json()
            biggest = max(clusters, key=lambda c: sum(c["cards_by_chip"].values()))
            shoot(page, url, f"/console/clusters/{biggest['name']}", out, "cluster")
            shoot(page, url, "/console/tenants/demo", out, "tenant-quota")
            shoot(page, url, "/console/audit", out, "audit")
            shoot(page, url, "/console/fleet?lang=en", out, "fleet-en")
            page.goto(f"{url}/console/fleet?lang=zh")  # the operator's pages in Chinese
            shoot(page, url, "/console/utilisation?window=1h", out, "utilisation")
            for name in ("queues", "wan", "revenue"):
                shoot(page, url, f"/console/{name}", out, name)
            page.goto(f"{url}/console/fleet?lang=zh")  # back to the default for what follows
            page = browser.new_context(viewport=VIEWPORT, locale="zh-CN").new_page()
            login(page, url, tenant)
            page.goto(f"{url}/console/jobs")
            page.fill("[data-testid=command]", "for i in 1 2 3; do echo 第 $i 步; sleep 0.3; done")
            page.click("[data-testid=submit]")
            page.wait_for_selector("[data-testid=job-log][data-state=succeeded]", timeout=60_000)
            page.screenshot(path=str(out / "job.png"))
            print(f"wrote {out / 'job.png'}", flush=True)
            shoot(page, url, "/console/jobs", out, "jobs")
            shoot(page, url, "/console/keys", out, "keys")
            shoot(page, url, "/console/usage", out, "usage")
            page.goto(f"{url}/console/apps")  # an app from a template (keyword search: no model)
            page.select_option("[data-testid=template]", "education-tutor")
            page.fill("[data-testid=app-name]", "tutor")
            page.click("[data-testid=create-app]")
            page.wait_for_selector("[data-testid=versions]")
            shoot(page, url, "/console/apps", out, "apps")
            shoot(page, url, "/console/apps/tutor", out, "app")
            shoot(page, url, "/console/apps/tutor/chat", out, "app-chat")
            shoot(page, url, "/console/quota", out, "quota")
            shoot(page, url, "/console/deployments", out, "deployments")
            shoot(page, url, "/console/datasets", out, "datasets")
            shoot(page, url, "/console/knowledge", out, "knowledge")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
