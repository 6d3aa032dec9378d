"""Options shared by several commands, defined once."""

from pathlib import Path
from typing import Annotated, Optional

import typer

Json = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts instead of tables.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same result.")]
Device = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1, or auto.")]
OutDir = Annotated[Path, typer.Option("--out", help="Output directory.")]
OptPath = Annotated[Optional[Path], typer.Option()]
