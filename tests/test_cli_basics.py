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


def test_version_and_help_load_neither_torch_nor_numpy():
    """``--version`` and ``--help`` (of every command) answer without the heavy imports, which is
    what keeps them well under half a second."""
    code = (
        "import sys, contextlib, io\n"
        "from mambairv2.cli.main import build_parser\n"
        "parser = build_parser()\n"
        "for argv in (['--version'], ['--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            parser.parse_args(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'gradio', 'PIL') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
