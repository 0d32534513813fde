import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_examples_run():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the README should show a Python example"
    for block in blocks:
        namespace = {}
        exec(compile(block, "README.md", "exec"), namespace)
    terms = namespace["loss"].terms
    assert {"log_likelihood", "mutual_info", "tc_between", "tc_within", "dimwise_kl"} <= set(terms)


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = re.search(r'pip install -e "\.\[test\]" && (python -m pytest[^\n`]*)', readme).group(1)
    assert test_command in ci, "CI must run the README's test command"
