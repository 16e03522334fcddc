"""`reconciler ccv check-pricing`: exit 0 when consistent, 65 with one line per problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, run_cli

EXAMPLE = Path(__file__).parent / "pricing_example.json"


async def test_a_consistent_body_exits_0_without_any_config(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-config.toml"
    result = await call_cli("--config", missing, "ccv", "check-pricing", EXAMPLE)
    assert (result.code, result.stdout) == (0, "")


async def test_each_problem_is_one_line_with_its_json_path() -> None:
    body = json.loads(EXAMPLE.read_text())
    body["currency"] = "USD"
    body["periodPricingDetails"][0]["includingTax"] = 1.5
    result = await call_cli(
        "ccv", "check-pricing", "-", stdin=json.dumps(body).encode(), env=cli_env()
    )
    assert result.code == 65
    assert result.stdout.splitlines() == [
        '$.currency: currency must be EUR (expected "EUR", found "USD")',
        "$.periodPricingDetails[0].includingTax: must be excludingTax + the sum of taxAmount"
        " (expected 0.00, found 1.50)",
    ]


async def test_json_output_lists_problems_for_scripts() -> None:
    result = await call_cli("ccv", "check-pricing", "--json", "-", stdin=b'{"currency": "EUR"}')
    assert result.code == 65
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {"path": "$.order", "blocking": True}.items() <= report["problems"][-2].items()


async def test_input_that_is_not_json_is_one_line_and_exit_65() -> None:
    result = await call_cli("ccv", "check-pricing", "-", stdin=b"{not json")
    assert result.code == 65
    assert "not JSON" in result.stderr
    assert "Traceback" not in result.stderr


async def test_input_nested_too_deep_says_so_as_the_api_does() -> None:
    # Before: "not JSON: maximum recursion depth exceeded while decoding a JSON array ...".
    deep = b"[" * 100_000 + b"]" * 100_000
    result = await call_cli("ccv", "check-pricing", "-", stdin=deep)
    assert (result.code, result.stdout) == (65, "")
    assert result.stderr.endswith("reconciler: error: -: not JSON: it nests too deep\n")


async def test_amounts_too_large_or_not_json_are_problems_not_tracebacks() -> None:
    body = json.loads(EXAMPLE.read_text())
    body["shippingCost"] = 10**30
    result = await call_cli("ccv", "check-pricing", "-", stdin=json.dumps(body).encode())
    assert result.code == 65
    assert result.stdout.startswith("$.shippingCost: the amount is too large")
    assert "Traceback" not in result.stderr
    result = await call_cli("ccv", "check-pricing", "-", stdin=b'{"shippingCost": NaN}')
    assert result.code == 65
    assert "NaN is not a JSON number" in result.stderr


async def test_a_body_that_is_no_object_says_what_it_found_only() -> None:
    result = await call_cli("ccv", "check-pricing", "-", stdin=b"[]")
    assert (result.code, result.stdout) == (
        65,
        "$: the body must be a JSON object (found a list)\n",
    )


def _one_byte_too_big(tmp: Path) -> Path:
    with open(tmp / "big.json", "wb") as f:
        f.truncate((16 << 20) + 1)
    return tmp / "big.json"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: Path("/dev/zero"), "not a regular file or a pipe"),
        (_one_byte_too_big, "larger than 16 MiB"),
    ],
    ids=["device", "too-big"],
)
async def test_a_body_file_that_is_no_file_to_read_is_one_line_and_exit_65(
    tmp_path: Path, make: Callable[[Path], Path], problem: str
) -> None:
    path = make(tmp_path)
    result = await call_cli("ccv", "check-pricing", path)
    assert (result.code, result.stdout) == (65, "")
    assert result.stderr.strip().splitlines()[-1].endswith(f"{path}: {problem}")


async def test_a_body_from_a_pipe_is_read() -> None:
    # A process: /dev/stdin must be a real pipe, which call_cli's stdin is not.
    result = await run_cli("ccv", "check-pricing", "/dev/stdin", stdin=EXAMPLE.read_bytes())
    assert (result.code, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"a": NaN}', "-: not JSON: "),
        (b'{"a": 1, "a": 2}', "-: "),
        (b'{"a": 1e999}', "-: "),
        (b'{"a": ' + b"9" * 5000 + b"}", "-: "),
        (b"[" * 100_000 + b"]" * 100_000, "-: not JSON: it nests too deep"),
    ],
    ids=["nan", "repeated-key", "1e999", "5000-digits", "too-deep"],
)
async def test_json_output_is_one_object_also_for_input_that_is_no_json(
    raw: bytes, error: str
) -> None:
    # `--json` printed nothing at all for these: a script parsing stdout got no object.
    result = await call_cli("ccv", "check-pricing", "--json", "-", stdin=raw)
    assert result.code == 65, result.stderr
    report = json.loads(result.stdout)
    assert (report["ok"], report["problems"]) == (False, [])
    assert report["error"].startswith(error)
    assert result.stderr == f"reconciler: error: {report['error']}\n"


async def test_json_output_of_a_body_read_has_no_error() -> None:
    result = await call_cli("ccv", "check-pricing", "--json", str(EXAMPLE))
    assert (result.code, json.loads(result.stdout)) == (
        0,
        {"ok": True, "problems": [], "error": None},
    )
