"""`fakeface evaluate` refuses flags out of range in one line naming the setting and the value."""

from __future__ import annotations

import pytest

from training.evaluate import main


@pytest.mark.parametrize("flags, said", [
    (["--batch-size", "0"], "EvalConfig.batch_size: Input should be greater than or equal to 1, received 0."),
    (["--cpus-per-actor", "17"], "EvalConfig.cpus_per_actor: Input should be less than or equal to 16, received 17.0."),
    (["--bootstrap", "5"], "BootstrapConfig.n_resamples: Input should be greater than or equal to 10, received 5."),
])
def test_a_flag_out_of_range_is_one_line_naming_it_and_the_value(tmp_path, capsys, flags, said):
    # Refused while the config is built: no data is read and Ray never starts.
    assert main(["--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out"), *flags]) == 2
    assert capsys.readouterr().err == f"fakeface evaluate: error: {said}\n"
