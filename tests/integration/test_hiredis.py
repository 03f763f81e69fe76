"""Issue 2: an application linked against hiredis, through respfence."""

import os
import subprocess
import unittest

from harness import HIREDIS_CLIENT, TestCase


class Hiredis(TestCase):
    def test_hiredis_client(self):
        r = self.redis()
        p = self.proxy(r)
        env = dict(os.environ, RESPFENCE_PORT=str(p.port))
        run = subprocess.run([HIREDIS_CLIENT], env=env, capture_output=True, timeout=300)
        self.assertEqual(run.returncode, 0, (run.stdout + run.stderr).decode(errors="replace"))
        self.assertEqual(r.client().get("hk4999"), b"value-4999")


if __name__ == "__main__":
    unittest.main()
