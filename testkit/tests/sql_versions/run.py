"""Runs SQL statements on current ClickHouse (chdb-core, embedded).

Reads one JSON object on stdin: {"migrations": [sql, ...], "statements":
[{"name": ..., "sql": ...}, ...]}. Applies the migrations (statements separated
by ";" at the end of a line, as Tally's runner does) in a fresh database of a
fresh session directory, then runs every statement and prints one JSON object:
{"version": ..., "results": {name: null (ran) or the error text},
"outputs": {name: the JSONEachRow output of a statement that ran}}. Statements
run in the order given (the test sends the reads first).
"""

import json
import sys
import tempfile

from chdb import session


def main():
    request = json.load(sys.stdin)
    with tempfile.TemporaryDirectory(prefix="tally-chdb-") as path:
        db = session.Session(path)
        db.query("CREATE DATABASE IF NOT EXISTS tally")
        db.query("USE tally")
        for migration in request["migrations"]:
            for statement in migration.split(";\n"):
                lines = [l for l in statement.splitlines() if not l.strip().startswith("--")]
                text = "\n".join(lines).strip().rstrip(";").strip()
                if text:
                    db.query(text)
        results = {}
        outputs = {}
        for item in request["statements"]:
            try:
                answer = db.query(item["sql"], "JSONEachRow")
                results[item["name"]] = None
                outputs[item["name"]] = answer.bytes().decode("utf-8") if answer is not None else ""
            except Exception as error:  # noqa: BLE001 - reported, not hidden
                results[item["name"]] = str(error)[:2000]
        version = str(db.query("SELECT version()", "TSV")).strip()
        db.close()
    json.dump({"version": version, "results": results, "outputs": outputs}, sys.stdout)


if __name__ == "__main__":
    main()
