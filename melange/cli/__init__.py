"""The `melange` command: a thin click group; each subcommand lives in its own module."""

from __future__ import annotations

import click

from melange.core import MelangeError


class UserError(click.ClickException):
    """Bad input: printed as one line `Error: ...`, exit code 2."""

    exit_code = 2


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
    from melange.cli import gpus, models, plan, profile, simulate, solve

    for command in (plan.plan, solve.solve, simulate.simulate, profile.profile, gpus.gpus, models.models):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="melange")
