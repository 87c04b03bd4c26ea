"""The configured RMM API clients, built once by the composition root on one HTTP session."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from daemon import __version__
from daemon.config.rmm_sections import DattoConfig, SyncroConfig
from daemon.rmm.datto import DattoClient
from daemon.rmm.syncro import SyncroClient


@dataclass
class RmmClients:
    """The clients of the sources whose API credentials are configured (others are None)."""

    session: aiohttp.ClientSession | None = None
    datto: DattoClient | None = None
    syncro: SyncroClient | None = None

    @property
    def resolvers(self) -> dict[str, DattoClient | SyncroClient]:
        return {name: client for name, client in (("datto", self.datto),
                                                    ("syncro", self.syncro)) if client}

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


def build_clients(datto: DattoConfig, syncro: SyncroConfig) -> RmmClients:
    """Clients for the sources with API credentials; call from a running event loop."""
    if not (datto.api_configured or syncro.api_configured):
        return RmmClients()
    session = aiohttp.ClientSession(headers={"User-Agent": f"alertd/{__version__}"})
    clients = RmmClients(session=session)
    if datto.api_configured:
        assert datto.api_key and datto.api_secret
        clients.datto = DattoClient(session, datto.api_url, datto.api_key.get_secret_value(),
                                    datto.api_secret.get_secret_value())
    if syncro.api_configured:
        assert syncro.api_key
        clients.syncro = SyncroClient(session, syncro.api_url, syncro.api_key.get_secret_value())
    return clients
