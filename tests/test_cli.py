"""The command line: every step is registered and loads only what it uses, and a missing input is
a message, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from traffic_retrieval.apps import cli

COMMANDS = Path(cli.__file__).with_name("commands")


def test_every_step_has_a_subcommand_module_with_help(capsys):
    assert sorted(p.stem for p in COMMANDS.glob("*.py") if p.stem != "__init__") == sorted(cli.COMMANDS)
    for step in cli.COMMANDS:
        with pytest.raises(SystemExit) as exit:
            cli.main([step, "--help"])
        assert exit.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: traffic-retrieval {step}")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listing = " ".join(capsys.readouterr().out.split())
    assert all(name in listing and help_text in listing for name, help_text in cli.COMMANDS.items())


def _modules_loaded_by(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom traffic_retrieval.apps import cli\ntry:\n    cli.main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\nprint('MODULES:', ' '.join(sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    return set(done.stdout.rpartition("MODULES:")[2].split())


@pytest.mark.parametrize("argv", [["evaluate", "--help"], ["prepare", "--help"], ["--help"],
                                  ["evaluate", "--submission", "absent.json", "--ground-truth", "absent.txt"]])
def test_light_commands_never_import_torch_faiss_or_fastapi(argv):
    loaded = _modules_loaded_by(argv)
    assert "traffic_retrieval.apps.cli" in loaded  # the probe ran
    assert not loaded & {"torch", "faiss", "fastapi", "open_clip", "matplotlib"}


def test_a_model_command_does_import_torch():  # the probe can tell
    assert "torch" in _modules_loaded_by(["infer", "--data", "absent", "--out", "absent.json", "--pretrained", "none"])


@pytest.mark.parametrize("argv", [
    ["train", "--train-csv", "x.csv", "--name", "r", "--pretrained", "missing/epoch_3.pt"],
    ["infer", "--data", "no/such/data", "--out", "sub.json", "--pretrained", "none"],
    ["prepare", "--data", "no/such/data"],
])
def test_missing_inputs_exit_2_with_a_message(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written


MODEL_COMMANDS = {  # every command that ranks or scores with a model, with its other required arguments
    "infer": ["--out", "sub.json"], "index": ["--out", "index"], "rerank": ["--submission-topn", "s.json", "--out", "o.json"],
    "search": ["a red SUV"], "serve": [], "augment": [],
}


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_a_model_command_needs_pretrained_and_takes_none_only_when_asked(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        cli.main([command, *MODEL_COMMANDS[command]])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "--pretrained" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # refused before any work
    assert cli.build_parser(command).parse_args([command, *MODEL_COMMANDS[command], "--pretrained", "none"]).pretrained == "none"
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "or none for random weights" in " ".join(capsys.readouterr().out.split())
