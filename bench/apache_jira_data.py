"""Real labelled issues for the accuracy reports: bug reports of eight Apache projects' public Jira.

Source: github.com/SPEAR-SE/LogInBugReportsEmpirical_Data at commit ``COMMIT``, the raw Jira REST v2
JSON of one bug report per file (``bug_reports/<Project>/<KEY>.json``; ActiveMQ, Hadoop, HDFS, Hive,
MapReduce, Storm, YARN, ZooKeeper; 2004-2019). Licence: the repository states none of its own; the
text was submitted to the Apache Software Foundation's issue tracker, which the Apache License 2.0
(sections 1 and 5) counts as Contributions under that licence. An inherited licence, not one the
collectors state: so this project commits the script and the reports, not the data.

Written (UTF-8 CSV): ``subject``, ``body`` (cut to ``--max-body`` characters), ``created_at``,
``project``, ``component`` (PROJECT/first component: names like ``build`` recur across projects;
empty when none), ``priority``. No person fields. Rows without a summary and duplicates dropped.
``--out`` gets the older 80% by creation time as ``<stem>_train.csv`` and the newest 20% as
``<stem>_test.csv``: a model is scored on issues filed after every issue it learned from.

    git clone https://github.com/SPEAR-SE/LogInBugReportsEmpirical_Data /tmp/spear   # any clone
    .venv/bin/python bench/apache_jira_data.py --repo /tmp/spear/.git --out /tmp/apache_jira.csv
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

COMMIT = "ab9603c66899b48b0b86bdf63ae7f7a604212b29"
PROJECTS = ["ActiveMQ", "HDFS", "Hadoop", "Hive", "MAPREDUCE", "Storm", "YARN", "Zookeeper"]
TEST_SHARE = 0.2


def _blobs(repo: Path) -> list[str]:
    """The issue files' blob ids at ``COMMIT``."""
    listing = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", COMMIT, *[f"bug_reports/{p}/" for p in PROJECTS]],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [
        meta.split()[2]
        for meta, path in (line.split("\t", 1) for line in listing.splitlines())
        if meta.split()[1] == "blob" and path.endswith(".json")
    ]


def _contents(repo: Path, blobs: list[str]) -> Iterator[bytes]:
    """Each blob's bytes, in order, through one ``git cat-file --batch``."""
    with subprocess.Popen(
        ["git", "--git-dir", str(repo), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as git:
        assert git.stdin is not None and git.stdout is not None
        for blob in blobs:  # one at a time: git's answer never fills the pipe while we write
            git.stdin.write(f"{blob}\n".encode())
            git.stdin.flush()
            size = int(git.stdout.readline().split()[2])
            yield git.stdout.read(size)
            git.stdout.read(1)
        git.stdin.close()


def _name(value: object) -> str:
    return str(value.get("name") or "") if isinstance(value, dict) else ""


def issues(repo: Path, max_body: int) -> pd.DataFrame:
    """The bug reports as rows, oldest first."""
    rows = []
    for raw in _contents(repo, _blobs(repo)):
        fields = json.loads(raw).get("fields") or {}
        project = (fields.get("project") or {}).get("key") or ""
        components = [_name(c) for c in fields.get("components") or [] if _name(c)]
        rows.append(
            {
                "subject": (fields.get("summary") or "").strip(),
                "body": (fields.get("description") or "").replace("\r\n", "\n").strip()[:max_body],
                "created_at": fields.get("created") or "",
                "project": project,
                "component": f"{project}/{components[0]}" if components else "",
                "priority": _name(fields.get("priority")),
            }
        )
    frame = pd.DataFrame(rows)
    frame = frame[frame["subject"] != ""].drop_duplicates(["subject", "body"])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, errors="coerce")
    return frame.sort_values("created_at", kind="stable").reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="The repository's git folder.")
    parser.add_argument("--out", type=Path, required=True, help="CSV path; _train/_test beside it.")
    parser.add_argument("--max-body", type=int, default=1500)
    args = parser.parse_args()
    frame = issues(args.repo, args.max_body)
    cut = len(frame) - round(TEST_SHARE * len(frame))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    for part, rows in (("train", frame.iloc[:cut]), ("test", frame.iloc[cut:])):
        rows.to_csv(args.out.with_name(f"{args.out.stem}_{part}.csv"), index=False)
    print(f"{len(frame)} issues ({cut} train, {len(frame) - cut} test, split at {frame['created_at'][cut]})")
    for column in ("project", "component", "priority"):
        counts = frame.loc[frame[column] != "", column].value_counts()
        print(
            f"{column}: {counts.sum()} labelled, {len(counts)} classes, {(counts < 30).sum()} under 30 rows"
        )


if __name__ == "__main__":
    main()
