from __future__ import annotations

import pytest

from gcpo.cli import build_parser, main, parse_args


def test_overrides_may_follow_flags() -> None:
    argv = ["signals", "--input", "g.jsonl", "alpha=0.5", "-q", "calibration=snr"]
    args = parse_args(build_parser(), argv)
    assert args.overrides == ["alpha=0.5", "calibration=snr"]
    args = parse_args(build_parser(), ["analyze", "--prompts", "2", "bootstrap=10"])
    assert args.overrides == ["bootstrap=10"]
    args = parse_args(build_parser(), ["train", "--check", "steps=3", "weighting.alpha=0.5"])
    assert [args.config, *args.overrides] == ["steps=3", "weighting.alpha=0.5"]


def test_unknown_flags_are_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(build_parser(), ["train", "--no-such-flag"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_data_error_is_one_line_without_traceback(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "groups.jsonl"
    bad.write_bytes(b'{"prompt": "p", "completions": ["a"], "rewards": [1]}\n{"prompt": \n')
    code = main(["signals", "--input", str(bad), "--preset", "grpo", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert "groups.jsonl:2" in err and "Traceback" not in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "train" in capsys.readouterr().out
