#!/usr/bin/env python
"""Shim for a repository checkout: ``python tools/convert.py ...`` is ``xlmr convert ...``."""
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: E401,E702
try:
    from xlmr.cli.main import main  # noqa: E402
except ImportError as e:  # a Python without xlmr's dependencies (not the project's venv): say which, and what to do
    sys.exit(f"tools/convert.py: {e} (this Python is {sys.executable}); install xlmr first: python3 -m venv .venv && "
             ".venv/bin/pip install -e '.[all]', then run .venv/bin/xlmr convert ...")
sys.exit(main(["convert", *sys.argv[1:]]))
