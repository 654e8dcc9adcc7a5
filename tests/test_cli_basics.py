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


import pytest  # noqa: E402


@pytest.mark.parametrize("argv, line", [
    (["restore", "a.png", "-o", "out", "--tile", "abc"],
     "error: argument --tile: expected a size in pixels or 'auto', got 'abc' (see mambairv2 restore --help)"),
    (["restore", "a.png", "-o", "out", "--bogus"], "error: unrecognized arguments: --bogus (see mambairv2 restore --help)"),
    (["analyze", "complexity", "--bogus", "1"],
     "error: unrecognized arguments: --bogus 1 (see mambairv2 analyze complexity --help)"),
    (["restore"], "error: the following arguments are required: INPUT, -o/--output (see mambairv2 restore --help)"),
    (["bogus"], None),
])
def test_argument_mistakes_are_one_line_naming_the_command(argv, line, capsys):
    """Mistakes argparse catches read like every other user mistake: one line, exit status 2."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    if line is not None:
        assert err.strip() == line
    else:
        assert "invalid choice: 'bogus'" in err and err.strip().endswith("(see mambairv2 --help)")


def test_bench_help_says_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: [])" not in text and "(default: False)" not in text
    assert text.count("(default: light)") == 1 and "mamba_ssm, triton, export" in text


def test_a_file_given_as_a_folder_is_called_not_a_folder(tmp_path, capsys):
    hr = tmp_path / "hr"
    hr.mkdir()
    np = pytest.importorskip("numpy")
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(hr / "a.png")
    assert main(["evaluate", "--baseline", "bicubic", "--task", "sr", "--scale", "2", "--hr-dir", str(hr),
                 "--lr-dir", str(hr / "a.png")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --lr-dir {hr / 'a.png'}: not a folder"


@pytest.mark.parametrize("argv", [["info", "--kernels", "--models"], ["info", "default", "--kernels"],
                                  ["info", "--variants", "--model", "light"]])
def test_info_refuses_two_things_at_once(argv, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: info shows one thing at a time; got ") and err.count("\n") == 1


def test_configs_lists_each_with_a_whole_first_sentence(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) > 20
    for line in lines:
        name, summary = line.split(maxsplit=1)
        assert summary.endswith((".", ".)")), line  # not cut at the end of a comment line
    assert any(line.startswith("quickstart_light_x2_cpu") and line.endswith("validated on Set5 (Y-PSNR).")
               for line in lines)
