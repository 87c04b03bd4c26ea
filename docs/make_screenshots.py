"""Screenshots of the web console for the docs: alertd on a scratch SQLite database with a few
sample alerts (fictional), signed in, each main page in Debian's Chromium (playwright).

    .venv/bin/python docs/make_screenshots.py      # writes docs/img/console-*.png
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from playwright.async_api import async_playwright

from daemon.config import load_config
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import Asset, Customer, Site

OUT = Path(__file__).parent / "img"
TOKEN = "docs-screenshot-token-0123456789"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]
ALERTS = [
    ("datto", "3f0c6a51-8d47-4c2b-9d0e-2a6f5b1c7e90", "FS-ACME-01", "Acme Dental",
     "Disk usage on C: above 90% (97% used)"),
    ("datto", "7a1d2e3f-4b5c-4d6e-8f70-112233445566", "DC-HARBOR-02", "Harbor Law",
     "Service 'Netlogon' stopped"),
    ("syncro", "90311", "FRONTDESK-PC", "Acme Dental", "Low disk space on C: (4.2 GB free)"),
    ("datto", "c0ffee00-1111-4222-8333-444455556666", "SQL-NORTH-01", "Northwind Traders",
     "Backup job 'Nightly' failed: target unreachable"),
    ("syncro", "90377", "RECEPTION-LT", "Harbor Law", "Antivirus definitions out of date"),
]


async def sample_data(url: str, db: Database) -> None:
    now = datetime.now(UTC)

    def places(session: object) -> None:
        for n, name in enumerate(("Acme Dental", "Harbor Law", "Northwind Traders"), 1):
            session.add(Customer(id=n, name=name, active=True, updated_at=now))  # type: ignore[attr-defined]
            session.add(Site(id=n, customer_id=n, name="Main", active=True, updated_at=now))  # type: ignore[attr-defined]
        session.flush()  # type: ignore[attr-defined]
        session.add(Asset(name="FS-ACME-01", serial="CZJ3390KX1", customer_id=1, site_id=1,  # type: ignore[attr-defined]
                          active=True, fields={}, updated_at=now))
    await db.write(places)  # type: ignore[arg-type]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        for source, uid, device, customer, message in ALERTS:
            async with session.post(f"{url}/api/alerts", json={
                    "source": source, "uid": uid, "action": "raise", "device": device,
                    "customer": customer, "message": message, "priority": "High",
                    "condition": message.split(":")[0]}) as response:
                assert response.status == 201, await response.text()
        # Two more raises of ticket 1's condition (the same check on the same device) join it.
        for uid in ("3f0c6a51-8d47-4c2b-9d0e-2a6f5b1c7e91", "3f0c6a51-8d47-4c2b-9d0e-2a6f5b1c7e92"):
            async with session.post(f"{url}/api/alerts", json={
                    "source": "datto", "uid": uid, "action": "raise", "device": "FS-ACME-01",
                    "customer": "Acme Dental", "condition": "Disk usage on C",
                    "message": "Disk usage on C: above 90% (98% used)"}) as response:
                assert (await response.json())["events"][0]["outcome"] == "joined"
        # A maintenance window on one server, and an alert it holds back.
        async with session.post(f"{url}/api/maintenance", json={
                "scope": "device", "value": "SQL-NORTH-01", "starts_at": now.isoformat(),
                "ends_at": (now + timedelta(hours=3)).isoformat(),
                "reason": "SQL Server upgrade, change 2291", "actor": "dana"}) as response:
            assert response.status == 201
        async with session.post(f"{url}/api/alerts", json={
                "source": "datto", "uid": "c0ffee00-1111-4222-8333-444455556667",
                "action": "raise", "device": "SQL-NORTH-01",
                "message": "Service 'MSSQLSERVER' stopped"}) as response:
            assert (await response.json())["events"][0]["outcome"] == "suppressed"
        async with session.post(f"{url}/api/tickets/2/notes", json={
                "body": "Restarted Netlogon; watching the DC for an hour.",
                "actor": "dana"}) as response:
            assert response.status == 201
        async with session.post(f"{url}/api/tickets/5/close", json={
                "note": "Definitions updated by hand.", "actor": "sam"}) as response:
            assert response.status == 200


async def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "alertd.toml"
        config_path.write_text(f'[daemon]\nstate_dir = "{tmp}"\n[api]\ntokens = ["{TOKEN}"]\n'
                               '[datto]\nwebhook_secret = "shared-secret-for-the-docs-0001"\n'
                               '[http]\npublic_url = "https://alertd.example-msp.com"\n'
                               '[[lifecycle.maintenance]]\nname = "patch night"\n'
                               'scope = "customer"\nvalue = "Harbor Law"\ndays = ["sat"]\n'
                               'start = "22:00"\nduration = "6h"\n'
                               'time_zone = "America/Chicago"\nreason = "Windows updates"\n')
        config = load_config(config_path, environ={})
        db = Database(config.database.url)
        await db.upgrade()
        services = build_services(config, db)
        runner = web.AppRunner(create_app(services.http, ROUTES))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            await sample_data(url, db)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                           args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport={"width": 1280, "height": 760})
                await page.goto(f"{url}/ui/signin")
                await page.screenshot(path=OUT / "console-signin.png")
                await page.get_by_label("API token").fill(TOKEN)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url("**/ui/tickets")
                for name, path in (("tickets", "/ui/tickets"), ("ticket", "/ui/tickets/2"),
                                   ("ticket-condition", "/ui/tickets/1"),
                                   ("maintenance", "/ui/maintenance"),
                                   ("deliveries", "/ui/deliveries"), ("webhooks", "/ui/webhooks"),
                                   ("status", "/ui/status")):
                    await page.goto(url + path)
                    await page.screenshot(path=OUT / f"console-{name}.png", full_page=True)
                await page.goto(f"{url}/ui/rules")
                await page.get_by_label("Message").fill(
                    "From: rmm@example-msp.com\nTo: alerts@example-msp.com\n"
                    "Subject: Alert on device: 10.0.4.17, reason Disk usage on C: above 90% - "
                    "Alert{3f0c6a51-8d47-4c2b-9d0e-2a6f5b1c7e90}\n\nSite: Acme Dental\n")
                await page.get_by_role("button", name="Test").click()
                await page.wait_for_load_state()
                await page.screenshot(path=OUT / "console-rules.png", full_page=True)
                await browser.close()
        finally:
            await runner.cleanup()
            await services.rmm.close()
            await db.dispose()
    print("written:", ", ".join(sorted(p.name for p in OUT.glob("console-*.png"))))


if __name__ == "__main__":
    asyncio.run(main())
