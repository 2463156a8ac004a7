"""``python -m surveyproc.cli``: the same as the ``surveyproc`` command."""

import sys

from . import main

sys.exit(main())
