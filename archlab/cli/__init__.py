"""The ``archlab`` command line: one module per command group.

Every user error (a wrong field in a file, an unknown preset) is printed as one line
naming the field, with exit code 2 and no traceback; ``--json`` output is the only thing
on stdout.
"""

import typer

from archlab.cli.common import warnings_as_lines
from archlab.cli.describe import describe_cmd, presets_cmd
from archlab.cli.distill import distill_cmd, gan_finetune_cmd, sample_cmd
from archlab.cli.evolve import evolve_cmd
from archlab.cli.proxy import proxy_app
from archlab.cli.results import dashboard_cmd, export_cmd, report_cmd
from archlab.cli.study import study_app
from archlab.cli.table import table_app

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Architecture search and profiling for mobile text-to-image diffusion UNets.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"archlab {version('archlab')}")
        except PackageNotFoundError:  # a checkout that is not installed
            print("archlab (not installed)")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print archlab's version and exit.")) -> None:
    warnings_as_lines()
app.command("presets")(presets_cmd)
app.command("describe")(describe_cmd)
app.add_typer(table_app, name="table")
app.add_typer(proxy_app, name="proxy")
app.command("evolve")(evolve_cmd)
app.add_typer(study_app, name="study")
app.command("report")(report_cmd)
app.command("dashboard")(dashboard_cmd)
app.command("export")(export_cmd)
app.command("distill")(distill_cmd)
app.command("gan-finetune")(gan_finetune_cmd)
app.command("sample")(sample_cmd)


def main() -> None:  # pragma: no cover - console entry point
    app()
