"""The live display of a measured profile run (rich): a bar for the point in progress, a line
per finished point, a line per finished bucket."""

from __future__ import annotations

from melange.profiler.run import NoProgress
from melange.rate_search import Trial


class RichProgress(NoProgress):
    """Prints to stderr through rich; use as a context manager."""

    def __init__(self, label: str, time_unit: str = "req/s") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                            console=self.console, transient=True)
        self.label, self.unit = label, time_unit
        self.task = None

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def point_started(self, bucket: tuple[int, int], trial: Trial, n: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        what = "confirming" if trial.confirm else "at"
        self.task = self.bar.add_task(f"{self.label} bucket {bucket} {what} {trial.rate:.3g} {self.unit}",
                                      total=n, failed=0)

    def record(self, failed: bool) -> None:
        if self.task is not None:
            fields = self.bar.tasks[-1].fields
            self.bar.update(self.task, advance=1, failed=fields.get("failed", 0) + int(failed))

    def point_done(self, bucket: tuple[int, int], trial: Trial, verdict: dict, reused: bool) -> None:
        passed, why = bool(verdict.get("passed")), ""
        guard = verdict.get("guard")  # a confirming trial also needs its guard band (rate_search)
        if passed and trial.confirm and guard is not None and (verdict.get("attainment") or 0.0) < guard:
            passed, why = False, f" (below the guard band {guard:g})"
        mark = "[green]pass[/]" if passed else "[red]fail[/]"
        why = why or ("" if passed else f" ({verdict.get('reason', '')})")
        att = verdict.get("attainment")
        att_text = "" if att is None else f", attainment {att:.3f}"
        what = " confirm on fresh traffic (needs the guard band)" if trial.confirm else ""
        self.console.print(f"  bucket {bucket} {trial.rate:8.3g} {self.unit}{what}: {mark}{att_text}"
                           f"{' [dim](reused)[/]' if reused else ''}{why}")

    def bucket_done(self, bucket: tuple[int, int], rate: float) -> None:
        self.console.print(f"[bold]bucket {bucket}: max {rate:.3g} {self.unit}[/]")
