"""The real command line in a subprocess: exit codes, one-line errors with hints, no tracebacks,
and no run-directory artifact left behind by a failed command.

Each subprocess costs ~0.3-1 s, so the cases share them where they can.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import TIMEOUT, assert_no_artifact, assert_user_error, run_segment, segtool

# --------------------------------------------------------------------------------------------
# bad data: exit 1, the message names file, line and field


def test_missing_data_file(tmp_path):
    proc, workdir = run_segment(tmp_path, "nope.jsonl")
    lines = assert_user_error(proc)
    assert lines[0] == f"error: data file {tmp_path / 'nope.jsonl'} not found"
    assert lines[1] == "hint: check the path given to --data or data.path"
    assert_no_artifact(workdir)


def test_missing_data_file_debug_shows_traceback(tmp_path):
    proc, workdir = run_segment(tmp_path, "nope.jsonl", env_extra={"SEGTOOL_DEBUG": "1"})
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert f"segtool.errors.InputError: data file {tmp_path / 'nope.jsonl'} not found" in proc.stderr
    assert_no_artifact(workdir)


def test_malformed_json_line(tmp_path, write_jsonl):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}, "", '{"prompt": "x",'])
    proc, workdir = run_segment(tmp_path, data)
    lines = assert_user_error(proc)
    assert lines[0].startswith(f"error: {data} line 3: malformed JSON (")
    assert "--skip-invalid" in lines[1]
    assert_no_artifact(workdir)
    # the model was fingerprinted (plan) before the data was read: into this test's cache only
    assert (Path(os.environ["SEGTOOL_CACHE"]) / "fingerprints.json").is_file()


def test_missing_field(tmp_path, write_jsonl):
    data = write_jsonl(tmp_path / "missing.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b"}])
    proc, workdir = run_segment(tmp_path, data)
    lines = assert_user_error(proc)
    assert lines[0] == f"error: {data} line 2: field 'rejected' is missing"
    assert_no_artifact(workdir)


def test_empty_response(tmp_path, write_jsonl):
    data = write_jsonl(tmp_path / "empty.jsonl.gz", [{"prompt": "a", "chosen": "  \n ", "rejected": "c"}])
    proc, workdir = run_segment(tmp_path, data)
    lines = assert_user_error(proc)
    assert lines[0] == f"error: {data} line 1: field 'chosen' is an empty response"
    assert_no_artifact(workdir)


# --------------------------------------------------------------------------------------------
# bad config / bad usage


def test_unknown_key_in_config_file(tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text("[segment]\nstrategy = \"entropy\"\ncent = 2.0\n")
    workdir = tmp_path / "run"
    proc = segtool("segment", "--config", str(config), "--workdir", str(workdir), cwd=tmp_path)
    lines = assert_user_error(proc)
    assert lines[0] == f"error: {config}: unknown key segment.cent"
    assert lines[1].startswith("hint: did you mean 'c_ent'?")
    assert_no_artifact(workdir)


def test_unknown_preset_name(tmp_path):
    workdir = tmp_path / "run"
    proc = segtool("segment", "--preset", "no-such-preset", "--workdir", str(workdir), cwd=tmp_path)
    lines = assert_user_error(proc)
    assert lines[0].startswith("error: no preset named 'no-such-preset'")
    assert lines[1].startswith("hint: available presets: ") and "tiny" in lines[1]
    assert_no_artifact(workdir)


def test_unknown_cli_option_is_usage_error(tmp_path):
    workdir = tmp_path / "run"
    proc = segtool("segment", "--preset", "tiny", "--workdir", str(workdir), "--frobnicate", cwd=tmp_path)
    assert proc.returncode == 2
    assert "No such option" in proc.stderr and "--frobnicate" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_no_artifact(workdir)


# --------------------------------------------------------------------------------------------
# help, version, import cost


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), ["segment", "run", "status", "show"]),
        (("segment",), ["--preset", "--config", "--workdir", "--data", "--set", "--resume", "--force", "--skip-invalid", "--json"]),
        (("run",), ["--preset", "--workdir", "--set"]),
        (("status",), ["--workdir", "--json"]),
        (("show",), ["segments"]),
        (("show", "segments"), ["--row", "--side", "--html", "--cutoffs", "--preset"]),
    ],
    ids=["root", "segment", "run", "status", "show", "show-segments"],
)
def test_help_of_every_command(tmp_path, args, expected):
    proc = segtool(*args, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    for word in expected:
        assert word in proc.stdout, word


def test_help_does_not_import_heavy_libraries(tmp_path):
    code = (
        "import sys\n"
        "import segtool.cli.app\n"
        "assert 'torch' not in sys.modules, 'import segtool.cli.app imported torch'\n"
        "sys.argv = ['segtool', 'segment', '--help']\n"
        "try:\n"
        "    segtool.cli.app.main()\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("ok")


def test_version_via_console_script(tmp_path):
    from segtool import __version__

    script = Path(sys.executable).parent / "segtool"
    assert script.is_file(), "the segtool console script is not installed in this environment"
    proc = subprocess.run([str(script), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"segtool {__version__}\n"


def test_help_texts_survive_rich_markup():
    """The CLI renders help with Rich markup, which silently drops an unknown ``[tag]`` such as
    ``[default: x]`` or ``segtool[sat]``; every option and command help must render to exactly its own
    text (a literal bracket is written ``\\[``)."""
    import typer.main
    from rich.text import Text

    from segtool.cli.app import app

    def walk(command, path):
        yield path, command.help or ""
        for param in getattr(command, "params", []):
            yield f"{path} {param.name}", getattr(param, "help", None) or ""
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    lost = [(where, text) for where, text in walk(typer.main.get_command(app), "segtool")
            if Text.from_markup(text).plain != text.replace("\\[", "[")]
    assert not lost, lost
