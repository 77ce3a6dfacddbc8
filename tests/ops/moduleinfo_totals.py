"""Counts of the ModuleInfo conformance run, printed at the end of the session."""
import collections

SAMPLES = collections.Counter()  # passed / failed / skipped
SKIP_REASONS = collections.Counter()
NOTES = collections.Counter()  # samples checked in another way than asked
MODULES = collections.Counter()  # modules per outcome
PER_MODULE = collections.Counter()  # samples checked per module -> number of modules
SECONDS = [0.0]  # time spent checking modules
