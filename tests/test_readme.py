"""The README's config reference is the one the code declares."""

from job.config import markdown_table

from conftest import ROOT


def test_readme_config_reference_matches_the_schema():
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- config-reference:start -->\n") + len("<!-- config-reference:start -->\n")
    end = text.index("<!-- config-reference:end -->")
    assert text[start:end].strip() == markdown_table(), "regenerate with job.config.markdown_table()"
