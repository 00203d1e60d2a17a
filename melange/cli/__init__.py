"""The `melange` command: a thin click group; each subcommand lives in its own module.

Start-up stays instant: this module imports only click; a subcommand's module is imported when
the command runs (or --help lists it), and heavy libraries inside the command's body.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

from melange.errors import MelangeError

# Exit codes, the same for every command (README, "Exit codes").
EXIT_OK = 0
EXIT_GOAL_MISSED = 1  # the job ran but its goal was missed: no plan held, SLO missed, not optimal
EXIT_BAD_INPUT = 2  # bad input: one line naming the field
EXIT_SIGINT = 130  # interrupted by Ctrl-C
EXIT_SIGTERM = 143  # stopped by SIGTERM

# Explicit list: a reader sees every subcommand here (no auto-discovery); imported on use.
COMMANDS = {
    "plan": "melange.cli.plan:plan",
    "solve": "melange.cli.solve:solve",
    "simulate": "melange.cli.simulate:simulate",
    "profile": "melange.cli.profile:profile",
    "emulate": "melange.cli.emulate:emulate",
    "gpus": "melange.cli.gpus:gpus",
    "models": "melange.cli.models:models",
    "sweep": "melange.cli.sweep:sweep",
    "scenarios": "melange.cli.scenarios:scenarios",
    "compare": "melange.cli.compare:compare",
    "study": "melange.cli.study:study",
    "schedule": "melange.cli.schedule:schedule",
    "fleet": "melange.cli.fleet:fleet",
}


class UserError(click.ClickException):
    """Bad input: printed as one line `Error: ...`, exit code 2."""

    exit_code = EXIT_BAD_INPUT


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that one cleanup path (stop workers, keep finished work)
    serves both; only the exit code differs."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


class MelangeGroup(click.Group):
    """Loads subcommands lazily; turns MelangeError into one line (exit 2) and Ctrl-C/SIGTERM
    into exit 130/143 after the command's own cleanup has run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """As click's, but a usage error (bad flag value, missing argument) is one line too."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            message = exc.format_message()
            if "\n" in message:  # `melange` alone: the help text
                click.echo(message, err=True)
            else:
                where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
                click.echo(f"Error: {message}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_GOAL_MISSED)
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MelangeError as exc:
            raise UserError(str(exc)) from None
        except KeyboardInterrupt as exc:
            code = EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
            click.echo(f"\n{'terminated' if code == EXIT_SIGTERM else 'interrupted'}", err=True)
            raise click.exceptions.Exit(code) from None


@click.group(cls=MelangeGroup)
@click.version_option(package_name="melange")
def cli() -> None:
    """Mélange: the cheapest mix of GPU types that serves an LLM under a latency SLO.

    Exit codes: 0 success, 1 the job ran but its goal was missed (no plan held, SLO missed),
    2 bad input, 130 Ctrl-C, 143 SIGTERM.
    """


def main() -> None:
    """Console-script entry point: SIGTERM stops a command like Ctrl-C does (exit 143)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    try:
        cli(prog_name="melange")
    except KeyboardInterrupt as exc:  # raised outside a command (e.g. while importing it)
        sys.exit(EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT)


if __name__ == "__main__":
    main()
