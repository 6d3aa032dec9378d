"""The Typer apps every command module registers on, and the one place errors become messages."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from hddm_p2p.errors import HddmError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class _Group(TyperGroup):
    """Turns the project's exceptions into one-line messages with a non-zero exit, no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HddmError as e:
            raise fail(str(e)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; state on disk is consistent, run the same command again to resume", 130) from None
        except BrokenPipeError:  # the reader went away (`hddm … | head`): nothing left to say
            raise typer.Exit(0) from None
        except OSError as e:
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            raise fail(f"{e.strerror or e}{where}") from None


def _typer(help: str) -> typer.Typer:
    return typer.Typer(cls=_Group, help=help, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})


app = _typer("hddm: train diffusion experts alone, share them over IPFS, sample them together.")
data_app = _typer("Prepare data: cluster images, precompute latents.")
train_app = _typer("Train an expert or a router on one device.")
keys_app = _typer("Manage Ed25519 signing keys (your publisher identity).")
trust_app = _typer("Manage the publisher keys you trust.")
catalog_app = _typer("Publish and show signed catalogs of experts under an IPNS name.")

app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(keys_app, name="keys")
app.add_typer(trust_app, name="trust")
app.add_typer(catalog_app, name="catalog")


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
