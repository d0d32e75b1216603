"""``harness lab join``: the ray start command for a host's boards, checked names."""

from __future__ import annotations

import pytest

from tests.cli_runner import cli


def test_join_dry_run_prints_the_ray_start_command() -> None:
    code, out = cli("lab", "join", "--board", "pi5", "--board", "pi4", "--address", "h:6379",
                    "--dry-run")  # fmt: skip
    assert code == 0
    assert out.strip() == 'ray start --address=h:6379 --resources=\'{"board:pi5":1,"board:pi4":1}\''


def test_join_a_board_typo_lists_the_known_boards(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = cli("lab", "join", "--board", "pi55", "--address", "h:6379", "--dry-run")
    err = capsys.readouterr().err
    assert code != 0 and "--board pi55" in err and "pi5" in err and "local" not in err


def test_join_passes_what_follows_the_double_dash_to_ray_start() -> None:
    code, out = cli("lab", "join", "--board", "pi5", "--address", "h:6379", "--dry-run",
                    "--", "--num-cpus=1", "--node-ip-address=10.0.0.7")  # fmt: skip
    assert code == 0
    assert out.strip().endswith("'{\"board:pi5\":1}' --num-cpus=1 --node-ip-address=10.0.0.7")
