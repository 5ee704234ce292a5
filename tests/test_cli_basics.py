"""The command line's first impressions: fast help without torch, one-line errors."""
from __future__ import annotations

import subprocess
import sys

from bigntk.cli import main


def test_cli_import_and_help_do_not_import_torch():
    code = "import sys, bigntk.cli; bigntk.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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
