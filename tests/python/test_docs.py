import runpy
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_sql_api_reference_matches_the_comments_in_the_database(database_url):
    render = runpy.run_path(str(DOCS / "generate_sql_api.py"))["render"]
    assert (DOCS / "sql-api.md").read_text() == render(database_url), "run `make docs` to regenerate"
