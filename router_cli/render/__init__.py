"""What users see: ``text`` (errors, notes, answers, one-record reports), ``tables`` (the
report tables), ``charts`` (text bars and SVG plots) and ``progress`` (a batch on a terminal).
Import from the submodules; this package imports nothing, so loading it costs nothing."""
