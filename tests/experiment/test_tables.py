"""Tables from records (spgd.experiment.tables): one number formatter, CSV and Markdown, the eval text table."""

from __future__ import annotations


import math

from spgd.experiment.tables import csv_text, format_table, markdown_table, mean_and_std, number, plus_minus


def test_table_columns_never_run_together():
    big = {"mean": 0.056625519744512, "std": 2.5e10}
    e = {"psnr": big, "ssim": big, "rms_residual": {"mean": 1e10}, "denoiser_calls": {"mean": 6.0},
         "vjps": {"mean": 3.0}, "seconds": {"mean": 0.1}, "n_failed": 0}
    text = format_table({"per_method": {"spgd": e}})
    row = text.splitlines()[1].split()
    assert row[0] == "spgd" and len(row) == 1 + 2 + 6, text  # every cell its own whitespace-separated field


def test_the_table_flags_under_fit_and_failed_results():
    e = {"psnr": {"mean": 12.5, "std": 1.0}, "ssim": {"mean": 0.3, "std": 0.1}, "rms_residual": {"mean": 0.47},
         "denoiser_calls": {"mean": 30.0}, "vjps": {"mean": 30.0}, "seconds": {"mean": 37.0}, "n_failed": 1,
         "n_under_fit": 9, "fit": {"mean": 47.2, "std": 5.0}}
    text = format_table({"per_method": {"dps": e}})
    row = text.splitlines()[1].split()
    assert row[0] == "dps" and row[-2:] == ["1", "9(47x)"], text
    assert "under-fit N(Fx)" in text and "spgd.verdict" in text


def test_one_number_formatter():
    assert number(None) == number(math.nan) == number(math.inf) == "-"
    assert number(3.14159) == "3.14" and number(3.14159, ".4f") == "3.1416" and number(0.01234, ".3g") == "0.0123"
    assert number(2.5e10, ".2f") == "2.50e+10"  # fixed point too wide for a column
    assert plus_minus({"mean": 1.0, "std": 0.25}, 2) == "1.00±0.25" and plus_minus({"mean": None}, 2) == "-"


def test_mean_and_std_are_population_statistics():
    assert mean_and_std([]) == {"mean": None, "std": None}
    assert mean_and_std([1.0, 3.0]) == {"mean": 2.0, "std": 1.0}


def test_csv_and_markdown():
    assert csv_text(["a", "b"], [[1, None], ["x,y", 2.5]]) == 'a,b\n1,\n"x,y",2.5\n'
    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
