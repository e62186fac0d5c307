"""Studies: designed sets of experiments, planned, generated as scripts, run, checked and tuned (docs/studies.md)."""
