"""The one table writer: markdown (numeric columns right-aligned) and CSV of the same rows."""

from __future__ import annotations

import csv
import io

from speedlab.tables import csv_text, markdown


def test_markdown_right_aligns_numeric_columns_only():
    text = markdown(["Backend", "p50", "Speed-up"], [["eager", "1.50 ms", "1.00×"], ["onnxruntime", "0.66 ms", None]])
    lines = text.splitlines()
    assert lines[0] == "| Backend | p50 | Speed-up |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[3] == "| onnxruntime | 0.66 ms |  |"


def test_csv_holds_the_same_rows_with_quoting():
    text = csv_text(["key", "value"], [["a,b", 1], ["c", None]])
    assert list(csv.reader(io.StringIO(text))) == [["key", "value"], ["a,b", "1"], ["c", ""]]


def test_a_pipe_or_line_break_in_a_cell_cannot_break_the_table():
    text = markdown(["Scenario", "Did"], [["7. inspect", "a | b\nc"]])
    assert text.splitlines()[1:] == ["|---|---|", "| 7. inspect | a \\| b c |"]  # a numbered label is not a number
