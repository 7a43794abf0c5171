"""The ``mimic3d`` console script (also ``python -m mimic3d``): one sub-command per module in ``COMMANDS``.

Adding a command: write ``mimic3d/cli/<name>.py`` with ``register(subparsers)``, which adds its parser
and sets ``func`` (called with the parsed namespace, returns an exit code), and list it in
``COMMANDS``. Only the module of the command being run is imported, so that ``mimic3d --help`` or a
data command does not load the metrics and training stacks; the other commands are listed by their
one-line help.

Every command line is read the same way (``parse_command_line``): sub-command names first, then the
command's own arguments intermixed, so ``KEY=VALUE`` overrides and positionals may come before or
after any flag. Every user error ends the same way (``main``): one line ``<full command>: error:
...`` naming the flag the user typed, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from mimic3d import __version__
from mimic3d.runtime import apply_backend_policy, tune_cpu_allocator, tuning_requested

# Command name (= module under mimic3d.cli) -> one-line help shown by ``mimic3d --help``.
COMMANDS: dict[str, str] = {
    "dataset": "check, build or synthesise EG3D-format datasets",
    "metrics": "FID/KID/SWD of a generator under named protocols",
    "generate": "multi-view sample grids with depth and normal maps",
    "video": "MP4 of a camera trajectory, latent interpolation or style mixing",
    "mesh": "density volume and marching-cubes mesh of each seed",
    "epi": "EPI images (one image row over a camera sweep), 2D and 3D branch side by side",
    "invert": "invert aligned images (one or more views) into a latent and a tuned generator",
    "planes": "tri-plane feature norms, coarse and residual",
    "doctor": "check the installation: versions, devices, weight files, numerics",
    "train": "train EG3D / Mimic3D from a preset, or resume a run",
    "distill": "distil a tri-plane generator into a fast convolutional student (NeRF-GAN distillation)",
    "export": "export a generator to ONNX or TorchScript (checked against PyTorch)",
    "demo": "show the shipped heads64 model, then train a tiny Mimic3D on synthetic heads (7 CPU minutes by "
    "default) and write a report",
    "view": "interactive viewer in the browser: orbit any generator live (needs mimic3d[viewer])",
}
# Errors a command raises for bad input (files, flags, config fields): one line, exit status 2.
USER_ERRORS = (ValueError, OSError)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_LEADING_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*): ")


class CommandLineError(Exception):
    """A command line argparse cannot read (unknown flag, bad value, missing argument)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class CommandParser(argparse.ArgumentParser):
    """argparse, except that a bad command line raises ``CommandLineError`` (one line, exit 2, printed
    by ``main``) instead of printing the usage and exiting. Sub-command parsers inherit the class."""

    def error(self, message: str):  # type: ignore[override]
        raise CommandLineError(self.prog, message)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The console parser with the full parser of ``command`` (its module is imported); every
    other command is a placeholder that only carries its name and one-line help."""
    parser = CommandParser(
        prog="mimic3d",
        description="3D-aware GANs in pure PyTorch: EG3D, Mimic3D, EpiGRAF and NeRF-GAN distillation.",
    )
    parser.add_argument("--version", action="version", version=f"mimic3d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name, summary in COMMANDS.items():
        if name == command:
            importlib.import_module(f"mimic3d.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def parse_command_line(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """(namespace, the parser of the command that runs) for ``argv``.

    Each level with sub-commands reads its own options (``--help``, ``--version``) up to the first
    word, which names the sub-command; the last level reads the rest with ``parse_intermixed_args``.
    A deeper level's values (``func`` included) override its parents'.
    """
    values: dict = {}
    while (sub := _subcommands(parser)) is not None:
        index = next((i for i, token in enumerate(argv) if not token.startswith("-")), len(argv))
        values.update(vars(parser.parse_args(argv[:index])))
        if index == len(argv):
            return argparse.Namespace(**values), parser
        name = argv[index]
        if name not in sub.choices:
            parser.error(
                f"argument {sub.metavar or sub.dest}: invalid choice: {name!r} "
                f"(choose from {', '.join(sub.choices)})"
            )
        values[sub.dest] = name
        parser, argv = sub.choices[name], argv[index + 1 :]
    values.update(vars(parser.parse_intermixed_args(argv)))
    return argparse.Namespace(**values), parser


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Parameter name -> the flag that sets it: every option's destination (``sample_mult`` ->
    ``--sample-mult``) plus the aliases a command declares for the names its tool functions use in
    their errors (``parser.set_defaults(parameter_flags={"depth_multiplier": "--sample-mult"})``)."""
    names = {
        action.dest: max(action.option_strings, key=len)
        for action in parser._actions
        if action.option_strings and action.dest != "help"
    }
    names.update(parser.get_default("parameter_flags") or {})
    return names


def user_message(err: BaseException, parser: argparse.ArgumentParser) -> str:
    """The error text with a leading parameter name (``depth_multiplier: ...``) replaced by its flag."""
    message = str(err)
    match = _LEADING_NAME.match(message)
    if match and match.group(1) in (flags := flag_names(parser)):
        message = flags[match.group(1)] + message[match.end(1) :]
    return message


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The placeholders name the command (and answer --help, --version and unknown commands alone);
    # the command's own parser then reads the arguments.
    try:
        command = build_parser().parse_known_args(argv)[0].command
        args, parser = parse_command_line(build_parser(command), argv)
    except CommandLineError as err:
        print(f"{err.prog}: error: {err} (see {err.prog} --help)", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    if tuning_requested():  # MIMIC3D_MALLOC_TUNING=1: faster CPU forwards, more memory (mimic3d.runtime)
        tune_cpu_allocator()
    # EG3D's GPU numerics for every command; --tf32 (where a command has it) trades them for speed.
    apply_backend_policy(tf32=getattr(args, "tf32", False))
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"{parser.prog}: error: {user_message(err, parser)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
