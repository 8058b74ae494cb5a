"""Run the ``lavit`` command line in process (real argument parsing, real exit codes)."""

from lightning_modules.cli import lavit_main


def run_lavit(capsys, *argv) -> tuple[int, str, list[str]]:
    """``lavit ARGV...`` -> (exit code, stdout, stderr lines)."""
    try:
        rc = lavit_main(list(map(str, argv)))
    except SystemExit as exit:
        rc = exit.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip().splitlines()
