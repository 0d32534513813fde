import math

import pytest


def test_tiny_run_writes_results_and_figure(load_example, tmp_path):
    example = load_example("progressive_dsprites")
    args = example.build_parser().parse_args(["--tiny", "--out", str(tmp_path), "--threads", "1"])
    results = example.main(args)
    assert results, "the example should return its runs"
    assert (tmp_path / "results.json").stat().st_size > 0
    assert (tmp_path / "information_flow.png").stat().st_size > 0
    for value in _numbers(results):
        assert not math.isnan(value)
    # The tables come back unchanged from the saved results, without training.
    remade = example.main(example.build_parser().parse_args(["--from-json", str(tmp_path / "results.json"),
                                                             "--out", str(tmp_path / "remade")]))
    assert remade["report"] == results["report"]
    # Pooling files of the same seeds would count runs twice.
    twice = ["--from-json", str(tmp_path / "results.json"), str(tmp_path / "results.json"), "--out", str(tmp_path)]
    with pytest.raises(ValueError, match="appears in more than one file"):
        example.main(example.build_parser().parse_args(twice))
    assert (tmp_path / "remade" / "information_flow.png").stat().st_size > 0


def _numbers(obj):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _numbers(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _numbers(value)
    elif hasattr(obj, "__dataclass_fields__"):
        yield from _numbers(vars(obj))
