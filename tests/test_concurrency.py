"""Many mmr processes on one ledger: no lost rows, breakers and cache stay consistent."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from router_cli.ledger import open_ledger
from tests.conftest import ROOT, write_config
from tests.provider_server import error


def test_eight_processes_hammering_one_ledger_lose_no_rows(server, tmp_path, db_path):
    config = write_config(tmp_path / "hammer.yaml", server.url,
                          extra="breaker: {failures: 1000, window: 600}\ncache: {enabled: true, scope: user}\n")
    for _ in range(20):
        server.script("claude-small", error(500))  # 20 failures spread over the processes: breaker writes too
    script = textwrap.dedent(f"""
        import sys
        from router_cli.config import load_config
        from router_cli import Router
        worker = sys.argv[1]
        with Router(load_config({str(config)!r}), {str(db_path)!r}, sleep=lambda s: None) as router:
            for i in range(10):
                router.ask(f"prompt {{i}} from worker {{worker}}", user=f"user{{worker}}")
            router.ask("prompt 0 from worker " + worker, user=f"user{{worker}}")  # a cache hit
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], cwd=ROOT, stderr=subprocess.PIPE) for n in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with open_ledger(db_path) as ledger:
        requests = ledger.read("SELECT count(DISTINCT request_id) FROM calls").fetchone()[0]
        errors = ledger.read("SELECT count(*) FROM calls WHERE status = 'error'").fetchone()[0]
        cached = ledger.read("SELECT count(*) FROM calls WHERE status = 'cached'").fetchone()[0]
        answered = ledger.read("SELECT count(*) FROM calls WHERE status = 'ok'").fetchone()[0]
        (failures,) = ledger.read("SELECT failures FROM breakers WHERE model = 'claude-small'").fetchone()
        entries = ledger.read("SELECT count(*) FROM cache").fetchone()[0]
    assert requests == 8 * 11
    assert answered == 80 and cached == 8 and errors == 20
    assert len(__import__("json").loads(failures)) == 20  # every failure counted, none lost to a race
    assert entries == 80
    assert len(server.calls()) == 100
