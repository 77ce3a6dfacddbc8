"""Sample counts of the OpInfo conformance run, printed at the end of the session."""
import collections

SAMPLES = collections.Counter()  # passed / failed / skipped
SKIP_REASONS = collections.Counter()
OPS = collections.Counter()  # ops run per outcome
