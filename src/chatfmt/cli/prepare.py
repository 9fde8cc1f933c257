"""``chatfmt prepare``: dataset files -> encoded training rows (JSONL or Parquet, optionally packed),
rejects and a report.

Stopping: SIGINT (Ctrl-C), SIGTERM (``timeout``, systemd, Slurm, Kubernetes) and SIGHUP all stop the
run the same way: worker processes are killed, temporary files removed, the output and rejects file
left as they were, one line on stderr, exit code 128 + the signal number (130, 143, 129). A repeated
SIGTERM/SIGHUP while stopping is ignored (``timeout`` sends two); SIGKILL ends the process at once (its
leftovers are collected by the next run into the same output; its workers end with it in any case)."""

from __future__ import annotations

import json
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..errors import NotRenderedWarning, StopSignal
from ..formats.base import not_rendered_message
from ..messages import PARSERS
from ..train.pipeline import ENGINES, TRAIN_ON, TRUNCATIONS, prepare
from ..train.writers import OUTPUT_FORMATS
from .common import TemplateKwargOption, fail, template_kwargs_option, user_errors, warn

if TYPE_CHECKING:
    from ..train.pipeline import PrepareTruncation

#: exit code of a run that wrote no example (2 is a usage or input error, 128 + N a signal)
EXIT_NOTHING_WRITTEN = 1


class _Rate(ProgressColumn):
    """Records done and records per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        rate = f"{speed:,.0f} records/s" if speed else "- records/s"
        return Text(f"{int(task.completed):,} records, {rate}", style="progress.data.speed")


_stopping = False


def _stop(signum: int, frame: Any) -> None:
    """Raise :class:`StopSignal` once; a repeat is ignored while stopping (``timeout`` sends SIGTERM to
    the command and again to its process group; a scheduler escalates to SIGKILL on its own)."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise StopSignal(signum)


#: the signals that stop a run cleanly (SIGINT arrives as KeyboardInterrupt)
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Run:
    written = False  # the output is in place (a signal after this point stops nothing)


@contextmanager
def _stoppable() -> Iterator[_Run]:
    """SIGTERM / SIGHUP raise :class:`StopSignal` while the run is on (main thread only), then the
    previous handlers are back; Ctrl-C's KeyboardInterrupt and these end as one line and exit
    128 + signal number."""
    global _stopping
    _stopping = False
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _stop) for sig in _STOP_SIGNALS} if main else {}
    run = _Run()
    try:
        yield run
    except KeyboardInterrupt:
        _stopped_by(signal.SIGINT, run)
    except StopSignal as e:
        _stopped_by(e.signum, run)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped_by(signum: int, run: _Run) -> None:
    name = signal.Signals(signum).name
    detail = " after the output was written" if run.written else "; temporary files removed, the output left as it was"
    with suppress(OSError, ValueError):  # stderr may be a closed pipe
        typer.echo(f"chatfmt: prepare stopped by {name}{detail}", err=True)
    raise typer.Exit(128 + signum)


@contextmanager
def _not_rendered_said_below() -> Iterator[None]:
    """Template keywords the format does not read are said once after the run, as a ``chatfmt:
    warning:`` line (from the report), not as a Python warning over the progress bar."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotRenderedWarning)
        yield


def prepare_cmd(
    inputs: Annotated[list[str] | None, typer.Argument(help="JSONL / JSON / Parquet files, directories or globs (with --dataset: the directory holding dataset_info.json).")] = None,
    format: str = typer.Option(..., "--format", "-f", help="Built-in name, .jinja, tokenizer_config.json, model dir, .gguf or Hub id ORG/NAME[@REV][:FILE.gguf]."),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="tokenizer.json, tokenizer.model, a model dir, a .gguf, a Hub id ORG/NAME[@REV], ..."),
    output: str = typer.Option(..., "--output", "-o", help="The dataset to write: .parquet -> Parquet, else JSONL (rejects go to OUTPUT.rejects.jsonl)."),
    output_format: str = typer.Option(None, "--output-format", help="parquet | jsonl | arrow (a datasets save_to_disk directory: load_from_disk, LLaMA-Factory tokenized_path; default: from the OUTPUT name)."),
    pack: int = typer.Option(None, "--pack", help="Pack examples greedily into sequences of at most N tokens."),
    max_length: int = typer.Option(None, "--max-length", help="Token limit."),
    truncation: str = typer.Option("error", "--truncation", help="error | right | drop_oldest_turns | skip"),
    train_on: str = typer.Option("all_assistant", "--train-on", help="all_assistant | last_assistant | all"),
    input_kind: str = typer.Option(None, "--input-kind", help="Force the record kind: openai, conversations, prompt_response, prompt_completion, sharegpt, alpaca."),
    report_file: str = typer.Option(None, "--report", help="Write the run report as JSON to this file."),
    batch_size: int = typer.Option(256, "--batch-size", help="Records encoded per batch."),
    workers: int = typer.Option(None, "--workers", "-w", help="Worker processes (default: all cores; 1: none)."),
    engine: str = typer.Option("local", "--engine", help="local | ray (Ray Data: a local instance, or --ray-address)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Join this Ray cluster (with --engine ray)."),
    allow_missing_tokens: bool = typer.Option(
        False, "--allow-missing-tokens", help="Encode even if the tokenizer lacks a token the format relies on (refused by default)."
    ),
    reject_unrendered_tools: bool = typer.Option(
        False, "--reject-unrendered-tools", help="Reject records whose tools the format leaves out of the prompt (default: write them, count them in the report, warn)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    template_kwarg: TemplateKwargOption = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", help="A dataset of LLaMA-Factory's dataset_info.json (repeatable, or NAME,NAME): its files, read with its formatting, columns and tags.")] = None,
    dataset_info: Annotated[str | None, typer.Option("--dataset-info", help="LLaMA-Factory's dataset_info.json (default: the one in the input directory).")] = None,
    ignore_key: Annotated[list[str] | None, typer.Option("--ignore-key", help="Drop this key from every record and message before parsing (repeatable): for data where a key chatfmt acts on (weight, mask, chosen, images, ...) means something else.")] = None,
) -> None:
    """Validate and encode training records into input_ids / labels rows.

    Exit codes: 0 = at least one example written (rejected records are listed in
    OUTPUT.rejects.jsonl); 1 = nothing written: every record was rejected, or the inputs hold no
    records (the empty output and the rejects file are still written); 2 = a usage or input error
    (a bad option, a missing input, a format or tokenizer that does not load, a tokenizer that lacks
    a token the format relies on (without --allow-missing-tokens), an output or --report
    file that cannot be written, an over-length record with --truncation error); 128 + N =
    stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), the output left as it was.
    """
    if truncation not in TRUNCATIONS:
        fail(f"--truncation must be one of {', '.join(TRUNCATIONS)}, not {truncation!r}")
    if train_on not in TRAIN_ON:
        fail(f"--train-on must be one of {', '.join(TRAIN_ON)}, not {train_on!r}")
    if batch_size < 1:
        fail("--batch-size must be at least 1")
    if input_kind is not None and input_kind not in PARSERS:
        fail(f"--input-kind must be one of {', '.join(PARSERS)}, not {input_kind!r}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        fail(f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    if pack is not None and pack < 1:
        fail("--pack must be at least 1")
    if workers is not None and workers < 1:
        fail("--workers must be at least 1")
    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if ray_address is not None and engine != "ray":
        fail("--ray-address needs --engine ray")
    template_kwargs = template_kwargs_option(template_kwarg)
    if dataset_info is not None and not dataset:
        fail("--dataset-info needs --dataset NAME (the datasets to read from it)")
    if dataset and input_kind is not None:
        fail("--input-kind and --dataset: the dataset description's formatting decides the record kind")
    if not inputs and not (dataset and dataset_info):
        fail("give input files (or, with --dataset, the directory holding dataset_info.json or --dataset-info)")
    console = Console(stderr=True)
    with _stoppable() as run, user_errors(), _not_rendered_said_below():
        with Progress(
            SpinnerColumn(),
            TextColumn("prepare"),
            _Rate(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=quiet or not console.is_terminal,
        ) as progress:
            task = progress.add_task("records", total=None)
            report = prepare(
                inputs,
                format,
                tokenizer,
                output,
                max_length=max_length,
                truncation=cast("PrepareTruncation", truncation),  # checked against TRUNCATIONS above
                train_on=train_on,
                input_kind=input_kind,
                batch_size=batch_size,
                output_format=output_format,
                pack=pack,
                workers=workers,
                engine=engine,
                ray_address=ray_address,
                on_record=lambda n: progress.advance(task, n),
                allow_missing_tokens=allow_missing_tokens,
                ignore_keys=ignore_key or (),
                reject_unrendered_tools=reject_unrendered_tools,
                template_kwargs=template_kwargs,
                dataset=dataset or None,
                dataset_info=dataset_info,
            )
            run.written = True
        if report_file:
            try:
                Path(report_file).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
            except OSError as e:
                fail(f"cannot write the report {report_file}: {e.strerror or e} (the output {output} is written)")
    typer.echo(f"{output}: {report.summary()}")
    if report.written == 0:
        why = "every record was rejected (see the rejects file)" if report.read else "the inputs hold no records"
        with suppress(OSError, ValueError):
            typer.echo(f"chatfmt: prepare wrote nothing: {why}", err=True)
        raise typer.Exit(EXIT_NOTHING_WRITTEN)
    for name in report.template_kwargs_not_read:
        warn(not_rendered_message(format, name) + " on any record")
    for name, n in sorted(report.not_rendered.items()):
        if name not in ("tools", "documents"):  # a record's own chat_template_kwargs
            warn(not_rendered_message(format, name) + f": {n} record(s) give it in their chat_template_kwargs")
            continue
        warn(
            f"chat format {format!r} does not render {name}: {n} record(s) were written with their {name} left "
            "out of the prompt (the model is trained without seeing them; --reject-unrendered-tools refuses them)"
        )
