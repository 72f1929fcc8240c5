"""The `equilibres` command line: one sub-command per step, all sharing --data, --out, --config.

Each command loads the study configuration, applies its CLI overrides, and calls the step's entry
``run(paths, config, *, force=...)`` (`equilibres run` calls them all, through :mod:`study.chain`).
Errors a user can act on (bad input, bad configuration, a locked build) are printed without a
traceback and exit non-zero. Importing this module first sets the process's allocation settings
(:mod:`study.process`; ``EQUILIBRES_ALLOCATOR=default`` turns them off).
"""

from __future__ import annotations

# ruff: noqa: E402 - the allocation settings must be in place before numpy and pyarrow are imported.
from study.process import apply_process_settings

#: What :func:`study.process.apply_process_settings` did for this process (and its workers).
PROCESS_SETTINGS = apply_process_settings()

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.config import ConfigError, StudyConfig, load_config
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths

app = typer.Typer(
    name="equilibres",
    help="Evaluation pipeline for the ÉQUILIBRES Article 51 experiment: generate or validate an SNDS "
    "extract, clean it, match, compute indicators and survey summaries, and write the report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Extract directory (SNDS tables, roster, surveys).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Build directory for every output.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Study configuration (TOML) merged over the default.")
]
EngineOpt = Annotated[
    str | None, typer.Option("--engine", help="Engine for cleaning: duckdb (default) or spark.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute even if cached outputs are up to date.")]
LangOpt = Annotated[str | None, typer.Option(help="Report language: fr (default) or en.")]
PdfOpt = Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write the PDF report.")]
RefreshOpt = Annotated[bool, typer.Option(
    "--refresh", help="First re-run the upstream steps whose results no longer follow from their inputs "
                      "(without it, such results stop the command).")]


def _announce(name: str) -> None:
    console.rule(f"[bold]{name}")


def _show(name: str, result: Any) -> None:
    console.print(escape(result.render()))


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can act on into a clear message and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as err:
            # Messages name settings like "[extract] csv_separator": escape them, they are not markup.
            console.print(f"[bold red]Configuration error[/]: {escape(str(err))}", markup=True, highlight=False)
            raise typer.Exit(code=2) from None
        except PipelineError as err:
            console.print(f"[bold red]Error[/]: {escape(str(err))}", markup=True, highlight=False)
            raise typer.Exit(code=getattr(err, "exit_code", 2)) from None
        except KeyboardInterrupt:
            console.print("[bold red]Interrupted[/]: outputs already in place were left untouched.")
            raise typer.Exit(code=130) from None

    return wrapper


def _config(config: Path | None, engine: str | None = None, **sections: dict[str, Any]) -> StudyConfig:
    cfg = load_config(config)
    overrides: dict[str, dict[str, Any]] = {k: v for k, v in sections.items() if v}
    if engine is not None:
        overrides.setdefault("engine", {})["name"] = engine
    return cfg.with_overrides(overrides) if overrides else cfg


@app.command()
@_user_errors
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the synthetic extract to.")],
    scale: Annotated[float, typer.Option(help="1 = full study size (about 25 800 ÉQUILIBRES patients).")] = 0.05,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = 20240101,
    truth: Annotated[
        Path | None, typer.Option(help="Planted-truth TOML (default: calibrated to the published figures).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet, csv (SAS/Oracle style) or xpt.")] = "parquet",
    confounding: Annotated[
        float | None, typer.Option(help="Strength of unobserved confounding (overrides the truth file).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Generate a synthetic SNDS-shaped extract with planted effects and data-quality defects."""
    cfg = _config(config)
    from data_samples.generator import generate_extract
    result = generate_extract(out, scale=scale, seed=seed, truth_path=truth, fmt=fmt,
                              confounding=confounding, config=cfg)
    console.print(result.render())


@app.command()
@_user_errors
def validate(
    data: Annotated[Path, typer.Argument(help="Extract directory to check.")],
    config: ConfigOpt = None,
    examples: Annotated[int, typer.Option(help="Example rows shown per violation.")] = 3,
) -> None:
    """Check an extract against the SNDS input contract; print every violation; exit 1 if any."""
    from pipeline.contract import validate_extract

    report = validate_extract(data, _config(config), max_examples=examples)
    print(report.render())
    if not report.ok:
        raise typer.Exit(code=1)


@app.command()
@_user_errors
def clean(data: DataOpt, out: OutOpt = Path("build"), config: ConfigOpt = None, engine: EngineOpt = None,
          force: ForceOpt = False) -> None:
    """Clean the extract in stages (cached) and write persons, panel, stays, cohort and the audit trail."""
    from pipeline.runner import run as clean_extract

    result = clean_extract(BuildPaths(out, data), _config(config, engine), force=force)
    console.print(result.render())


def _matching_overrides(
    method: str | None, ratio: int | None, caliper: float | None, caliper_scale: str | None,
    transform: str | None, replace: bool | None, max_reuse: int | None, order: str | None,
    exact: str | None, seed: int | None, ps_covariates: str | None = None, ps_model: str | None = None,
    ps_scale: str | None = None, discard: str | None = None,
) -> dict[str, Any]:
    def columns(text: str | None) -> list[str] | None:
        return [c.strip() for c in text.split(",") if c.strip()] if text else None

    return {
        "method": method, "ratio": ratio, "caliper": caliper, "caliper_scale": caliper_scale,
        "transform": transform, "replace": replace, "max_reuse": max_reuse, "order": order,
        "exact": columns(exact), "seed": seed, "ps_covariates": columns(ps_covariates), "ps_model": ps_model,
        "ps_scale": ps_scale, "discard": discard,
    }


@app.command()
@_user_errors
def match(
    data: DataOpt = Path("data"),
    out: OutOpt = Path("build"),
    config: ConfigOpt = None,
    method: Annotated[str | None, typer.Option(help="nearest | optimal | propensity | cem")] = None,
    ratio: Annotated[int | None, typer.Option(help="Controls per treated patient (1:k).")] = None,
    caliper: Annotated[float | None, typer.Option(help="Caliper on the distance variable.")] = None,
    caliper_scale: Annotated[str | None, typer.Option(
        help="sd (pooled) | sd_all (MatchIt's std.caliper) | absolute | relative")] = None,
    transform: Annotated[str | None, typer.Option(help="none | log1p")] = None,
    replace: Annotated[bool | None, typer.Option("--replace/--no-replace", help="Reuse controls.")] = None,
    max_reuse: Annotated[int | None, typer.Option(help="With --replace: max uses of one control.")] = None,
    order: Annotated[str | None, typer.Option(help="closest | data | random | largest | smallest")] = None,
    exact: Annotated[str | None, typer.Option(help="Comma-separated exact-matching columns.")] = None,
    age_band_width: Annotated[int | None, typer.Option(help="Age band width in years.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for order=random and propensity.")] = None,
    ps_covariates: Annotated[str | None, typer.Option(
        help="Comma-separated propensity model covariates (method propensity).")] = None,
    ps_model: Annotated[str | None, typer.Option(help="penalised | glm (unpenalised, as R's glm)")] = None,
    ps_scale: Annotated[str | None, typer.Option(help="logit | probability (MatchIt's distance)")] = None,
    discard: Annotated[str | None, typer.Option(help="none | both | treated | control (common support)")] = None,
    refresh: RefreshOpt = False,
) -> None:
    """Match ÉQUILIBRES patients to controls from the cached cohort table (seconds, no re-cleaning)."""
    cfg = _config(
        config,
        matching=_matching_overrides(method, ratio, caliper, caliper_scale, transform, replace, max_reuse,
                                     order, exact, seed, ps_covariates, ps_model, ps_scale, discard),
        cohort={"age_band_width": age_band_width},
    )
    from study.chain import run_step

    console.print(run_step(BuildPaths(out, data), cfg, "match", refresh=refresh, on_step=_announce,
                           on_result=_show).render())


@app.command()
@_user_errors
def sweep(data: DataOpt = Path("data"), out: OutOpt = Path("build"), config: ConfigOpt = None,
          refresh: RefreshOpt = False) -> None:
    """Run the grid of matching specifications of the sweep section and record sizes, balance and effects."""
    from study.chain import run_step

    console.print(run_step(BuildPaths(out, data), _config(config), "sweep", refresh=refresh, on_step=_announce,
                           on_result=_show).render())


@app.command()
@_user_errors
def indicators(
    data: DataOpt = Path("data"),
    out: OutOpt = Path("build"),
    config: ConfigOpt = None,
    replicates: Annotated[int | None, typer.Option(help="Bootstrap replicates (>= 999 for the report).")] = None,
    eol_window_days: Annotated[int | None, typer.Option(
        help="End-of-life window: days before death, death day included (at most cleaning.eol_daily_days)."
    )] = None,
    refresh: RefreshOpt = False,
) -> None:
    """Compute the claims indicators with confidence intervals from the cached matching outputs."""
    cfg = _config(config, indicators={"bootstrap_replicates": replicates,
                                      "eol_window_days": eol_window_days})
    from study.chain import run_step

    console.print(run_step(BuildPaths(out, data), cfg, "indicators", refresh=refresh, on_step=_announce,
                           on_result=_show).render())


@app.command()
@_user_errors
def sensitivity(data: DataOpt = Path("data"), out: OutOpt = Path("build"), config: ConfigOpt = None,
                refresh: RefreshOpt = False) -> None:
    """Sensitivity analyses of the headline effects (E-values, negative controls, event study...) from
    the cached cleaning and matching outputs."""
    from study.chain import run_step

    console.print(run_step(BuildPaths(out, data), _config(config), "sensitivity", refresh=refresh,
                           on_step=_announce, on_result=_show).render())


@app.command()
@_user_errors
def surveys(data: DataOpt = Path("data"), out: OutOpt = Path("build"), config: ConfigOpt = None) -> None:
    """Summarise the patient/caregiver and nurse surveys (proportions, Likert, before/after)."""
    from surveys.study import run as summarise_surveys

    console.print(summarise_surveys(BuildPaths(out, data), _config(config)).render())


@app.command()
@_user_errors
def report(
    data: DataOpt = Path("data"),
    out: OutOpt = Path("build"),
    config: ConfigOpt = None,
    lang: LangOpt = None,
    pdf: PdfOpt = True,
    refresh: RefreshOpt = False,
) -> None:
    """Render the HTML and PDF report from the results already computed (nothing is recomputed).

    Results that do not form one consistent chain (one step re-run, the steps after it not) stop it,
    unless --refresh re-runs those steps first.
    """
    from study.chain import report as render_report

    result = render_report(BuildPaths(out, data), _config(config, report={"lang": lang}), pdf=pdf,
                           refresh=refresh, on_step=_announce, on_result=_show)
    console.print(result.render())


@app.command()
@_user_errors
def run(
    data: DataOpt,
    out: OutOpt = Path("build"),
    config: ConfigOpt = None,
    engine: EngineOpt = None,
    force: ForceOpt = False,
    with_sweep: Annotated[bool, typer.Option("--sweep/--no-sweep", help="Also run the sweep.")] = True,
    with_sensitivity: Annotated[bool, typer.Option(
        "--sensitivity/--no-sensitivity", help="Also run the sensitivity analyses.")] = True,
    with_report: Annotated[bool, typer.Option("--report/--no-report", help="Also write the report.")] = True,
    lang: LangOpt = None,
    pdf: PdfOpt = True,
) -> None:
    """Bring every step up to date: validate, clean, match, indicators, surveys, the sweep and the report.

    Like make, only the steps whose inputs, settings or code changed since they last ran are re-run
    (and those after them whose inputs thereby change); the others are reused (--force re-runs all).
    An extract that breaks the input contract stops the run before cleaning (exit code 1).
    """
    from study.chain import run_chain

    def show(name: str, result: Any) -> None:
        # Validation lists every file checked: its verdict (last line) is enough when it passes.
        console.print(result.render().splitlines()[-1] if name == "validate" else result.render())

    chain = run_chain(BuildPaths(out, data), _config(config, engine, report={"lang": lang}), force=force,
                      sweep=with_sweep, sensitivity=with_sensitivity, report_too=with_report, pdf=pdf,
                      on_step=_announce, on_result=show)
    console.rule("[bold]done")
    console.print(f"Re-run: {', '.join(chain.ran) or 'nothing'}; reused (up to date): "
                  f"{', '.join(chain.reused) or 'nothing'}.")
    for name, why in chain.reasons.items():
        console.print(f"  {name}: {escape('; '.join(why))}")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
