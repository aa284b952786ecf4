"""Progress of long commands on stderr: a live line with an elapsed timer on a terminal, a few
plain lines otherwise (a log file or CI gets one line per finished stage, no spinners or
colour codes).

:class:`StageProgress` is the ``on_stage`` callback of :func:`lgn_fpga.flow.build.build`:
``on_stage(name, "start" | "done" | "failed", seconds)`` for each stage, and
``on_stage(text, "progress" | "note")`` for what a running tool reports (nextpnr's placer
and router iterations, YoWASP's one-time compile).
"""

from __future__ import annotations

import sys
import time

#: On a non-terminal, a running stage's progress is written at most this often (seconds),
#: so a long place-and-route shows it is alive without flooding a log file.
PLAIN_EVERY = 30.0


class StageProgress:
    """Render build stages: ``with StageProgress() as p: build(opts, on_stage=p)``.

    Parameters
    ----------
    stream : file, optional
        Where to write (default: stderr).
    quiet : bool
        Write nothing (errors are the CLI's business).
    verbose : bool
        Also write each stage's start and every progress update as a line of its own.
    live : bool, optional
        Force the live terminal display on or off (default: on when ``stream`` is a
        terminal).
    clock : callable
        Seconds, for tests (default: ``time.monotonic``).
    """

    def __init__(self, stream=None, *, quiet: bool = False, verbose: bool = False,
                 live: bool | None = None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.verbose = verbose and not quiet
        is_tty = getattr(self.stream, "isatty", lambda: False)()
        self.live = (is_tty if live is None else live) and not quiet
        self.clock = clock
        self.stage: str | None = None
        self.started = 0.0
        self.last_plain = 0.0
        self._progress = None
        self._task = None

    # -- context ----------------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    # -- output -----------------------------------------------------------------------------

    def _line(self, text: str, style: str | None = None) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(f"[{style}]{text}[/{style}]" if style else text,
                                         highlight=False, markup=bool(style))
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, force_terminal=True)
        self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                                  TimeElapsedColumn(), TextColumn("[dim]{task.fields[detail]}"),
                                  console=console, transient=True)
        self._progress.start()

    # -- the callback -----------------------------------------------------------------------

    def __call__(self, name: str, state: str, seconds: float | None = None) -> None:
        now = self.clock()
        if state == "start":
            self.stage, self.started, self.last_plain = name, now, now
            if self.live:
                if self._progress is None:
                    self._start_live()
                if self._task is not None:
                    self._progress.remove_task(self._task)
                self._task = self._progress.add_task(name, detail="")
            elif self.verbose:
                self._line(f"{name} ...")
        elif state in ("done", "failed"):
            took = seconds if seconds is not None else now - self.started
            if self._task is not None:
                self._progress.remove_task(self._task)
                self._task = None
            if state == "done":
                self._line(f"✓ {name} {took:.1f} s" if self.live else f"{name}: {took:.1f} s",
                           None)
            else:
                self._line(f"✗ {name} failed after {took:.1f} s", "red" if self.live else None)
            self.stage = None
        elif state == "progress":
            if self._task is not None:
                self._progress.update(self._task, detail=name)
            if self.verbose:
                self._line(f"  {self.stage or ''}: {name}")
            elif not self.live and self.stage and now - self.last_plain >= PLAIN_EVERY:
                self._line(f"  {self.stage} ({now - self.started:.0f} s): {name}")
            else:
                return
            self.last_plain = now
        elif state == "note":
            if self._task is not None and "compiling the toolchain" in name:
                self._progress.update(self._task, detail="compiling the toolchain (once)")
            self._line(f"! {name}", "yellow" if self.live else None)


def rate_bar(total: int, *, stream=None, quiet: bool = False, what: str = "samples"):
    """A progress bar with a count and a rate (``what``/s), or ``None`` when ``stream`` is not
    a terminal or ``quiet``: the caller then reports only the final figures.

    Returns a ``(progress, update)`` pair: ``progress`` is a context manager, ``update(done,
    total)`` advances the bar."""
    stream = stream if stream is not None else sys.stderr
    if quiet or not getattr(stream, "isatty", lambda: False)():
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    class _Rate(TextColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            from rich.text import Text

            return Text("" if speed is None else f"{speed:,.0f} {what}/s", style="cyan")

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TaskProgressColumn(), _Rate(""),
                        TimeElapsedColumn(), console=Console(file=stream), transient=True)
    task = progress.add_task(what, total=total)

    def update(done: int, total_now: int) -> None:
        progress.update(task, completed=done, total=total_now)

    return progress, update
