"""promtext: the exposition rules edge and appserver share."""

from __future__ import annotations

from promtext import (
    BUCKETS,
    HISTOGRAM_CELLS,
    Family,
    exposition,
    histogram_lines,
    label_text,
    number,
    observe,
)


def test_label_values_are_escaped() -> None:
    assert label_text(()) == ""
    assert label_text((("a", 'x"y'), ("b", "back\\slash"), ("c", "two\nlines"))) == (
        '{a="x\\"y",b="back\\\\slash",c="two\\nlines"}'
    )


def test_numbers() -> None:
    assert number(3) == "3" and number(0.25) == "0.25" and number(1e21) == "1e+21"


def test_observe_then_histogram_lines_are_cumulative() -> None:
    cells = memoryview(bytearray(8 * HISTOGRAM_CELLS)).cast("q")
    for seconds in (0.001, 0.005, 0.3, 11.0):
        observe(cells, 0, seconds)
    lines = histogram_lines("x_seconds", (("w", "1"),), cells.tolist())
    assert lines[0] == 'x_seconds_bucket{w="1",le="0.005"} 2'
    assert f'x_seconds_bucket{{w="1",le="{BUCKETS[-1]!r}"}} 3' in lines
    assert lines[-3] == 'x_seconds_bucket{w="1",le="+Inf"} 4'
    assert lines[-2] == 'x_seconds_sum{w="1"} 11.306'
    assert lines[-1] == 'x_seconds_count{w="1"} 4'


def test_exposition_skips_families_without_samples_and_keeps_their_order() -> None:
    families = (Family("b_total", "counter", "B."), Family("a", "gauge", "A."))
    text = exposition(families, {"a": ["a 1"], "b_total": ["b_total 2"], "c": ["c 3"]})
    assert text == (
        b"# HELP b_total B.\n# TYPE b_total counter\nb_total 2\n# HELP a A.\n# TYPE a gauge\na 1\n"
    )
    assert exposition(families, {"a": []}) == b"\n"
