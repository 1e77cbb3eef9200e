"""A background run's child process: the run started from the config stored in its folder.

``python -m inspector.runs.child FOLDER`` reads what :func:`inspector.runs.background.start_run` stored
(:data:`~inspector.runs.folder.RUN_REQUEST`: the :class:`~inspector.runs.config.RunConfig` as
:meth:`~inspector.runs.config.RunConfig.to_dict` wrote it, and the model), loads the model and runs
:func:`~inspector.runs.execute.run_corpus`. The command identity is the one ``inspector run`` computes
for the same settings, so either resumes a run the other started.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from inspector.runs.folder import read_run_request
from inspector.runs.status import INTERRUPTED

#: How the child is started (``python -m CHILD_MODULE FOLDER``).
CHILD_MODULE = "inspector.runs.child"
#: Exit status of a run refused for its settings, data or folder (as ``inspector run``'s).
USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the folder's stored request; errors a user can fix go to stderr with exit status 2."""
    p = argparse.ArgumentParser(prog=f"python -m {CHILD_MODULE}", description=__doc__)
    p.add_argument("folder", help="the run folder holding the stored request")
    out = Path(p.parse_args(argv).folder)
    from inspector._model import ModelLoadError, load_model
    from inspector.runs.execute import run_corpus

    try:
        config, fields = read_run_request(out)
        model = load_model(str(fields["model"]), device=str(fields.get("device", "auto")), dtype=fields.get("dtype"),
                           random_weights=bool(fields.get("random_weights", False)))
        print(f"loaded {model.describe()}", file=sys.stderr)
        run = run_corpus(config, out, model, model_id=str(fields["model"]), progress=False,
                         command=[sys.executable, "-m", CHILD_MODULE, str(out)])
    except (ValueError, OSError, ModelLoadError) as exc:  # RunError, DailyDialogError, CaptureError: ValueErrors
        print(f"background run: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("background run: interrupted", file=sys.stderr)
        return INTERRUPTED
    counts = run.settings.get("counts") or {}
    print(f"wrote {run.path}: {counts.get('turns', len(run.summary))} turns", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(main())
