"""The providers' client asks for the codings read_body decodes, and no others: aiohttp's own
Accept-Encoding offers br wherever brotli can be imported (`aiohttp[speedups]`), zstd on Python
3.14, which read_body refuses: every check failed, every submit was uncertain."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import call_cli, cli_env, run_cli, write_config
from tests.fake_providers import FakeCCV, Reply

ORDER = "5a1e0000-0000-4000-8000-00000000ac01"
# Enough of brotli's module for aiohttp to offer br: what `pip install brotli` brings.
BROTLI_STUB = """
class Decompressor:
    def process(self, data): return data

def decompress(data): return data
"""


async def test_a_client_with_brotli_importable_asks_for_gzip_and_deflate_only(
    tmp_path: Path, fake_ccv: FakeCCV
) -> None:
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "brotli.py").write_text(BROTLI_STUB)
    env = cli_env(PYTHONPATH=os.pathsep.join([str(stub), os.environ.get("PYTHONPATH", "")]))
    fake_ccv.replies[ORDER] = Reply(200, '{"orderStatus": "Processing"}', "application/json")
    cfg = write_config(tmp_path, ccv=fake_ccv)
    assert (await call_cli("--config", cfg, "track", "ccv", ORDER)).code == 0
    # A process: brotli importable from its start, which this one's imports have passed.
    result = await run_cli("--config", cfg, "catch-up", env=env)
    assert result.code == 0, result.stderr
    asked = {seen.headers.get("Accept-Encoding") for seen in fake_ccv.requests_for(ORDER)}
    assert asked == {"gzip, deflate"}
