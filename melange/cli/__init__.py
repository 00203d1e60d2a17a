"""The `melange` command: a thin click group; each subcommand lives in its own module."""

from __future__ import annotations

import click

from melange.core import MelangeError

# Exit codes, the same for every command (README, "Exit codes").
EXIT_OK = 0
EXIT_GOAL_MISSED = 1  # the job ran but its goal was missed: no plan held, SLO missed, not optimal
EXIT_BAD_INPUT = 2  # bad input: one line naming the field
EXIT_SIGINT = 130  # interrupted by Ctrl-C
EXIT_SIGTERM = 143  # stopped by SIGTERM


class UserError(click.ClickException):
    """Bad input: printed as one line `Error: ...`, exit code 2."""

    exit_code = EXIT_BAD_INPUT


class MelangeGroup(click.Group):
    """Turns MelangeError raised anywhere below into a one-line error with exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MelangeError as exc:
            raise UserError(str(exc)) from None


@click.group(cls=MelangeGroup)
@click.version_option(package_name="melange")
def cli() -> None:
    """Mélange: the cheapest mix of GPU types that serves an LLM under a latency SLO."""


def _register() -> None:
    # Explicit list: a reader sees every subcommand here (no auto-discovery).
    from melange.cli import emulate, gpus, models, plan, profile, simulate, solve

    for command in (plan.plan, solve.solve, simulate.simulate, profile.profile, emulate.emulate, gpus.gpus,
                    models.models):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="melange")
