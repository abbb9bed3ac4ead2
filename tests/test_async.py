"""The asyncio twins."""

from __future__ import annotations

import asyncio

from conftest import tiny_config
from llamaproc import HealthStatus, LlamaServer, ServerStatus


def test_async_lifecycle(tiny_model):
    async def main() -> None:
        server = await LlamaServer.astart(tiny_config(tiny_model))
        try:
            assert (await server.ahealth_check()).status is HealthStatus.HEALTHY
            port = server.port
            await server.arestart()
            assert server.port == port and server.status is ServerStatus.READY
            assert (await server.ametrics()).slots_total == 2
        finally:
            await server.astop()
        assert server.status is ServerStatus.STOPPED
        async with LlamaServer(tiny_config(tiny_model)) as s2:
            assert s2.status is ServerStatus.READY
        assert s2.status is ServerStatus.STOPPED

    asyncio.run(main())
