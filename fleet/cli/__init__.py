"""The thin command line: parse arguments, call a workflow, render its result."""
