#!/usr/bin/env python
"""Shim for a repository checkout: ``python tools/convert.py ...`` is ``xlmr convert ...``."""
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: E401,E702
from xlmr.cli.main import main  # noqa: E402
sys.exit(main(["convert", *sys.argv[1:]]))
