"""Entry point of the ``pnprgm`` console script.

Commands live in :mod:`pnprgm.cli.commands` (``command`` or a ``commands`` list per module) and are registered by
discovery, so adding a command is adding a module. A :class:`pnprgm.errors.UserError` is printed as one line (no traceback), exit code 2.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings

import click

from pnprgm.cli import commands
from pnprgm.errors import UserError


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    """Warnings for users (a CUDA fallback, a dropped alpha channel) as one line, without the source line."""
    return f"warning: {message}\n"


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class _Group(click.Group):
    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Click's own errors (a bad option value, an unknown option) as one line naming the --help to read, exit
        code 2, instead of click's three-line usage block."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except _NO_ARGS_IS_HELP as err:  # a bare ``pnprgm`` or group: its help, as click shows it
            click.echo(err.ctx.get_help() if err.ctx is not None else err.format_message(), err=True)
            sys.exit(2)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx is not None else "pnprgm"
            click.echo(f"error: {err.format_message()} (see {where} --help)", err=True)
            sys.exit(2)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except (click.Abort, EOFError, KeyboardInterrupt) as err:
            cause = err if isinstance(err, KeyboardInterrupt) else err.__cause__
            if isinstance(cause, KeyboardInterrupt):
                from pnprgm.training.interrupt import Terminated

                # Ctrl-C (a training run has saved what it printed): the shell's status, 128 + the signal's number
                terminated = isinstance(cause, Terminated)
                click.echo("terminated." if terminated else "interrupted.", err=True)
                sys.exit(143 if terminated else 130)
            click.echo("aborted.", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            from pnprgm.errors import first_line

            # one line, and a bounded one: a message may quote a value the user gave (a 200 MB suite string)
            click.echo(f"error: {first_line(err, 2000)}", err=True)
            sys.exit(2)
        except OSError as err:
            # what the file system refused where a command has no finer message (a full disk under sample or
            # benchmark): one line with the fix, status 1 (the work failed, not its options); other OSErrors are
            # bugs to see in full
            from pnprgm.io import file_system_refusal

            line = file_system_refusal(err)
            if line is None:
                raise
            click.echo(f"error: {line}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pnprgm")
def app() -> None:
    """Plug-and-play image restoration with RGM denoisers.

    \b
    Typical session:
      pnprgm operators                       # which degradations exist, with their parameters
      pnprgm degrade photo.png --operator sr4 --noise 0.01 -o meas/
      pnprgm restore meas/ -o restored/      # reads the sidecar written by degrade
      pnprgm models                          # the shipped denoisers

    Every command has --help with examples.
    """


for _info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{commands.__name__}.{_info.name}")
    for _command in getattr(_module, "commands", [getattr(_module, "command", None)]):
        if _command is not None:
            app.add_command(_command)


def main() -> None:
    warnings.formatwarning = _one_line_warning
    # a file name that is not UTF-8 (bytes Python keeps as surrogates) is printed escaped, not a UnicodeEncodeError
    # halfway through a batch under a strict UTF-8 locale
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    app(prog_name="pnprgm")


if __name__ == "__main__":
    main()
