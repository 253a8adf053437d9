"""The ``xlmr`` command and the drivers behind it: code that runs backends, above them and above ``xlmr.common``.

Each subcommand is a module here with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; the work itself
is a function of the same module (``convert``'s ``verify``, ``parity``'s ``check_checkpoint``) that tests and users
import. ``xlmr.cli.main`` lists the subcommands.
"""
