"""The README's walkthrough, run top to bottom as written (issue 13).

Which commands are the walkthrough (the rule, for whoever edits README.md):
- Every indented code block (4 spaces) that directly follows a line
  `<!-- walkthrough -->` (an HTML comment: readers do not see it), in
  README order.  Blocks without the marker (examples that show output,
  commands for another machine) are not run.
- A marked block holds only shell commands and `#` comments: no output
  lines.  The blocks run as ONE bash script (`set -euo pipefail`), so a
  variable set in one block (TOKEN=$(...)) is seen by the later ones, and
  the first command that exits non-zero fails the test with the trace.
- The script runs in a scratch directory whose `bin` is the build under
  test ($TOKEND_BIN), against a harness tokend and PostgreSQL.  Only two
  things are substituted, both through what the README itself uses: the
  environment provides TOKEND_DATABASE_URL (so a block's own `export
  TOKEND_DATABASE_URL=...` line is dropped), and the address
  `http://127.0.0.1:8080` of `make run` becomes the harness tokend's.
"""

import os
import re
import subprocess
import unittest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MARK = "<!-- walkthrough -->"
PROVIDED = ("TOKEND_DATABASE_URL",)


def walkthrough_blocks(text):
    """The marked blocks' lines, de-indented, in README order."""
    lines = text.splitlines()
    blocks = []
    for i, ln in enumerate(lines):
        if ln.strip() != MARK:
            continue
        block = []
        for body in lines[i + 1:]:
            if body.startswith("    "):
                block.append(body[4:])
            elif body.strip() == "" and block:
                block.append("")
            else:
                break
        while block and block[-1] == "":
            block.pop()
        if not block:
            raise AssertionError("%s on line %d is not followed by an "
                                 "indented code block" % (MARK, i + 1))
        blocks.append(block)
    return blocks


def script(blocks, base_url):
    out = ["set -euo pipefail", "set -x"]
    for block in blocks:
        for ln in block:
            if re.match(r"\s*export (%s)=" % "|".join(PROVIDED), ln):
                continue
            out.append(ln.replace("http://127.0.0.1:8080", base_url))
    return "\n".join(out) + "\n"


class ReadmeWalkthrough(unittest.TestCase):
    def test_walkthrough_runs_as_written(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            blocks = walkthrough_blocks(f.read())
        self.assertGreaterEqual(len(blocks), 4)
        harness.pg().reset()
        with harness.Tokend(workers=1) as t:
            work = harness.tmpdir("tokend-readme-")
            os.symlink(os.path.dirname(harness.bin_path("tokenctl")),
                       os.path.join(work, "bin"))
            # A newcomer runs the walkthrough in the checkout, beside
            # README.md (which `tokenctl scan` reads).
            os.symlink(os.path.join(harness.ROOT, "README.md"),
                       os.path.join(work, "README.md"))
            env = dict(os.environ, TOKEND_DATABASE_URL=harness.pg().url)
            r = subprocess.run(
                ["bash", "-c", script(blocks,
                                      "http://127.0.0.1:%d" % t.port)],
                cwd=work, env=env, capture_output=True, text=True,
                timeout=120)
            trace = r.stderr[-4000:]
            self.assertEqual(r.returncode, 0, "a walkthrough command "
                             "failed:\n" + trace)
            out = r.stdout
            # After the walkthrough, alice signs in as "Getting tokens"
            # shows it (issue 13: the walkthrough once left her disabled).
            with open(os.path.join(ROOT, "README.md")) as f:
                pw = re.search(r"-d username=alice \\\n\s+-d password=(\S+)",
                               f.read()).group(1)
            tok = t.http("POST", "/token", headers={
                "Authorization": "Basic d2ViOndlYi1zZWNyZXQ="}, form={
                "grant_type": "password", "username": "alice",
                "password": pw, "scope": "read"})
            self.assertEqual(tok.status, 200, tok)
        # Key outputs: the PAT printed once, a listing, the JSON listing,
        # a secret printed by rotate-secret, and curl's 200 for alice.
        self.assertRegex(out, r"(?m)^tkp_[0-9A-Za-z]{49}$")
        self.assertRegex(out, r'"prefix": ?"tkp_')
        self.assertIn("HTTP/1.1 200 OK", out)
        self.assertRegex(out, r"(?mi)^x-auth-user: alice\r?$")
        self.assertRegex(out, r"(?mi)^x-request-id: [0-9a-f]{32}\r?$")
        # What the commands did, as PostgreSQL has it.
        rows = dict(harness.pg().sql(
            "SELECT name, disabled::text FROM users"))
        self.assertEqual(rows.get("alice"), "false")
        self.assertNotIn("robot", rows)
        clients = {c for (c,) in harness.pg().sql(
            "SELECT client_id FROM clients")}
        self.assertNotIn("cron", clients)
        self.assertTrue({"web", "spa"} <= clients, clients)

    def test_rule_finds_only_marked_blocks(self):
        text = ("intro\n\n%s\n    echo one\n\n    echo two\nafter\n\n"
                "    echo unmarked\n\n%s\n    export TOKEND_DATABASE_URL=x\n"
                "    curl http://127.0.0.1:8080/auth\n" % (MARK, MARK))
        blocks = walkthrough_blocks(text)
        self.assertEqual(blocks, [["echo one", "", "echo two"],
                                  ["export TOKEND_DATABASE_URL=x",
                                   "curl http://127.0.0.1:8080/auth"]])
        s = script(blocks, "http://127.0.0.1:9")
        self.assertNotIn("TOKEND_DATABASE_URL", s)
        self.assertIn("curl http://127.0.0.1:9/auth", s)
        self.assertNotIn("unmarked", s)


if __name__ == "__main__":
    unittest.main()
