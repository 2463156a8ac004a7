"""``python -m surveyproc``: the same as the ``surveyproc`` command."""

import sys

from .cli import main

sys.exit(main())
