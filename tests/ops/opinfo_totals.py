"""Sample counts of the OpInfo conformance run, printed at the end of the session."""
import collections

SAMPLES = collections.Counter()  # passed / failed / skipped
SKIP_REASONS = collections.Counter()
OPS = collections.Counter()  # ops run per outcome
PER_OP = collections.Counter()  # samples checked per op -> number of ops
SECONDS = [0.0]  # time spent checking ops
