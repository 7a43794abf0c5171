"""Messages name only flags and config keys that exist: every error, warning and log line in the
package (scanned from the source), every help text (per command), and the messages of the offline
paths of ``mimic3d train`` (checked against train's own flags)."""

from __future__ import annotations

import argparse
import ast
import logging
import re
import urllib.error
from pathlib import Path

import pytest
from training_support import TINY, write_random_dataset

import mimic3d
from mimic3d.checkpoints import pretrained
from mimic3d.cli.main import COMMANDS, build_parser, main
from mimic3d.losses.lpips import LPIPS
from mimic3d.training.presets import check_key

PACKAGE = Path(mimic3d.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")
SECTIONS = "generator|discriminator|patch_discriminator|loss|optim|schedule|augment|data|run"
KEY = re.compile(rf"(?<![\w.])(?:{SECTIONS})\.[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
# Flags of other programs that messages and help texts name on purpose.
EXTERNAL_FLAGS = {"--nproc_per_node", "--logdir"}
# Functions whose string arguments users read.
MESSAGE_CALLS = {"warn", "warning", "log", "print", "_say", "error", "info", "ArgumentTypeError"}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser (``dataset build`` etc. as well) by its full name."""
    found = {}
    for command in COMMANDS:
        stack = [build_parser(command)._subparsers._group_actions[0].choices[command]]
        while stack:
            parser = stack.pop()
            found[parser.prog.removeprefix("mimic3d ")] = parser
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    stack.extend(action.choices.values())
    return found


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


ALL_OPTIONS = set().union(*(_options(p) for p in _parsers().values()))


def _text(node: ast.AST) -> str:
    """The literal text of string arguments (f-string fields become a space)."""
    parts = []
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            parts.append(child.value)
        elif isinstance(child, ast.FormattedValue):
            parts.append(" ")
    return "".join(parts)


def _messages() -> list[tuple[str, str]]:
    """(where, text) of every raise and message call in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                found.append((f"{path.name}:{node.lineno}", _text(node.exc)))
            elif isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in MESSAGE_CALLS:
                    found.append((f"{path.name}:{node.lineno}", " ".join(_text(a) for a in node.args)))
    return found


def _bad_names(text: str, options: set[str]) -> list[str]:
    bad = [flag for flag in FLAG.findall(text) if flag not in options | EXTERNAL_FLAGS]
    for key in KEY.findall(text):
        try:
            check_key(key)
        except ValueError:
            bad.append(key)
    return bad


def test_every_message_in_the_package_names_real_flags_and_keys():
    messages = _messages()
    assert len(messages) > 300  # the scan sees the package's messages
    bad = {where: names for where, text in messages if (names := _bad_names(text, ALL_OPTIONS))}
    assert not bad


@pytest.mark.parametrize("command", sorted(_parsers()))
def test_help_texts_name_the_commands_own_flags(command):
    parser = _parsers()[command]
    texts = [parser.description or "", parser.epilog or ""] + [a.help or "" for a in parser._actions]
    bad = [names for text in texts if (names := _bad_names(text, _options(parser)))]
    assert not bad


def test_the_scan_catches_what_the_issue_reported():
    assert _bad_names("pass the file with --detector PATH", _options(_parsers()["train"])) == ["--detector"]
    assert _bad_names("set loss.lpips_dir=DIR", ALL_OPTIONS) == ["loss.lpips_dir"]
    assert _bad_names("set loss.lpips_weights_dir=DIR or --weights-dir", _options(_parsers()["demo"])) == []


@pytest.fixture
def offline(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setenv("MIMIC3D_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(pretrained.urllib.request, "urlopen", no_network)
    return write_random_dataset(tmp_path / "data")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["loss.lpips=pretrained"], "loss.lpips_weights_dir=DIR"),
        (["run.metrics=[fid50k_full]"], "$MIMIC3D_CACHE"),
    ],
)
def test_train_offline_errors_name_trains_own_options(offline, tmp_path, capsys, overrides, expected):
    argv = ["train", "tiny-mimic3d-heads", *TINY, f"data.path={offline}", *overrides]
    assert main([*argv, "--outdir", str(tmp_path / "runs"), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mimic3d train: error: ") and expected in err and "Traceback" not in err
    assert _bad_names(err, _options(_parsers()["train"])) == []


def test_untrained_lpips_warning_names_the_config_key(caplog):
    with caplog.at_level(logging.WARNING):
        LPIPS.untrained()
    assert "loss.lpips=pretrained" in caplog.text
    assert _bad_names(caplog.text, ALL_OPTIONS) == []
