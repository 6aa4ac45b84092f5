"""Command-line interface. Heavy modules are imported inside commands so ``triage --help`` is fast."""

from triage.cli import config as _config  # noqa: F401  (registers commands)
from triage.cli import deployments as _deployments  # noqa: F401
from triage.cli import encoders as _encoders  # noqa: F401
from triage.cli import evaluate as _evaluate  # noqa: F401
from triage.cli import models as _models  # noqa: F401
from triage.cli import pipeline as _pipeline  # noqa: F401
from triage.cli import simulator as _simulator  # noqa: F401
from triage.cli import sql as _sql  # noqa: F401
from triage.cli.app import app


def main() -> None:
    app()
