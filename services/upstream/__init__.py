"""Facts about the systems Medic repairs: annotation keys, labels, reasons, error strings, codecs.

One module per upstream system, each citing where its constants come from. Pure: no I/O, so the
rule engine, the watcher's classifiers and the sandbox can all share them.
"""
