import subprocess
import sys

from mambairv2.cli.main import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "mambairv2" in out


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "mambairv2", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "mambairv2" in proc.stdout
