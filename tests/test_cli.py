"""The command line: every step is registered, and a missing input is a message, not a traceback."""

from __future__ import annotations

import pytest

from traffic_retrieval import cli


def test_every_step_has_a_subcommand_with_help(capsys):
    for step in cli.STEPS:
        with pytest.raises(SystemExit) as exit:
            cli.main([step, "--help"])
        assert exit.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: traffic-retrieval {step}")


@pytest.mark.parametrize("argv", [
    ["train", "--train-csv", "x.csv", "--name", "r", "--pretrained", "missing/epoch_3.pt"],
    ["infer", "--data", "no/such/data", "--out", "sub.json"],
    ["prepare", "--data", "no/such/data"],
])
def test_missing_inputs_exit_2_with_a_message(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written
