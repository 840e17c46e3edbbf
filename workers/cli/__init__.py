"""`steplog`, the operator's command line (entry point :func:`workers.cli.main.main`).

``common`` holds what every command shares (consoles, the lazily built context), ``errors`` the one
mapping of errors to exit codes, ``main`` the Typer app; each other module is one command group and
imports what it needs when it runs, so `steplog --help` and the read-only commands start fast.
"""
