"""``xlmr SUBCOMMAND ...``: one command for every user-facing job (``xlmr --help`` lists them).

Errors a user can fix (a missing folder, a bad file, a wrong flag) are one line on stderr with exit status 2, never
a traceback; ``XLMR_DEBUG=1`` shows the traceback for reporting a bug.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> module; each module has HELP, add_arguments(parser) and run(args) -> exit status. Importing a module here
# must not import a deep-learning framework: that happens inside run().
COMMANDS = {
    "convert": "xlmr.cli.convert",
    "parity": "xlmr.cli.parity",
    "trim-vocab": "xlmr.cli.trim",
    "export": "xlmr.cli.export",
    "serve": "xlmr.cli.serve",
    "finetune": "xlmr.cli.finetune",
    "evaluate": "xlmr.cli.evaluate",
    "predict": "xlmr.cli.predict",
}


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        text = error.args[0]  # KeyError's str() adds quotes
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlmr", description="XLM-RoBERTa for PyTorch, TensorFlow and JAX/Flax.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(module=module, parser=command, prog=f"xlmr {name}")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ImportError as error:  # a Python without xlmr's own dependencies, e.g. not the project's venv
        print(f"xlmr: {_one_line(error)}: this Python ({sys.executable}) lacks xlmr's dependencies; install them "
              f"with: {sys.executable} -m pip install 'xlmr[all]' (or, in a checkout: python3 -m venv .venv && "
              f".venv/bin/pip install -e '.[all]', then run .venv/bin/xlmr)", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as error:
        if os.environ.get("XLMR_DEBUG"):
            raise
        print(f"{args.prog}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: still one line, with the way to see more
        if os.environ.get("XLMR_DEBUG"):
            raise
        print(f"{args.prog}: internal error ({type(error).__name__}): {_one_line(error)} "
              f"(run with XLMR_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
