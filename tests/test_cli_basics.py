"""The command line's first impressions: fast help without torch, one-line errors."""
from __future__ import annotations

import subprocess
import sys

from bigntk.cli import main


def test_cli_import_and_help_do_not_import_torch():
    code = "import sys, bigntk.cli; bigntk.cli.build_parser(); print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"  # help needs neither: heavy modules load when a command runs


def test_unexpected_errors_are_one_line(tmp_path, capsys, monkeypatch):
    import bigntk.cli.complete as cmd

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cmd, "run", boom)
    from bigntk import cli

    parser = cli.build_parser()
    args = parser.parse_args(["complete", "x.npy", "--prior", "z.npy", "--out", "o.npy"])
    args.func = boom
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, argv: args})())
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ZeroDivisionError: a bug" in err[0] and "report" in err[0]


def test_disk_errors_name_the_file(tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "Y.npy", np.ones((3, 4)))
    np.save(tmp_path / "Z.npy", np.random.default_rng(0).random((2, 4)))
    (tmp_path / "out").write_text("a file, not a folder")
    rc = main(["complete", str(tmp_path / "Y.npy"), "--prior", str(tmp_path / "Z.npy"), "--out",
               str(tmp_path / "out" / "x.npy"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "out" in err[0]


def test_cli_choices_agree_with_the_library():
    from bigntk.apps.inpaint.geometry import BOUNDARIES
    from bigntk.cli._common import BOUNDARY_CHOICES, SOLVER_CHOICES
    from bigntk.solvers.policy import SOLVERS

    assert tuple(SOLVER_CHOICES) == tuple(SOLVERS) and tuple(BOUNDARY_CHOICES) == tuple(BOUNDARIES)


def _leaves(parser, path=("bigntk",)):
    """(command path, parser) of every parser of the CLI, sub-verbs included."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaves(sub, path + (name,))


#: commands that compute nothing (they list, print or plot what is stored) or only stream numpy/h5py I/O
NO_COMPUTE = {"cache list", "cache clean", "kernel info", "kernel heatmap"}
NO_BARS = {"cache list", "cache clean", "kernel info", "kernel heatmap"}


def test_every_verb_and_option_says_what_it_does_and_its_default():
    import argparse

    from bigntk.cli import build_parser

    missing = []
    for path, parser in _leaves(build_parser()):
        name = " ".join(path)
        if len(path) > 1 and not parser.description:
            missing.append(f"{name}: no description")
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            label = action.option_strings[-1] if action.option_strings else action.dest
            text = formatter._get_help_string(action)
            if not action.help:
                missing.append(f"{name} {label}: no help")
            elif action.default not in (None, False) and "default" not in text:
                missing.append(f"{name} {label}: default {action.default!r} not shown")
    assert not missing, missing


def test_quiet_and_threads_on_every_command_that_computes():
    from bigntk.cli import build_parser

    lacking = []
    for path, parser in _leaves(build_parser()):
        name = " ".join(path[1:])
        if len(path) < 2 or any(a.__class__.__name__ == "_SubParsersAction" for a in parser._actions):
            continue  # only leaf commands run
        options = {o for a in parser._actions for o in a.option_strings}
        if name not in NO_BARS and "--quiet" not in options:
            lacking.append(f"{name}: --quiet")
        if name not in NO_COMPUTE and "--threads" not in options:
            lacking.append(f"{name}: --threads")
    assert not lacking, lacking
